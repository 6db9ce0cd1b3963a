"""The one error the services raise for a failure the user can act on (the CLI prints it)."""

from __future__ import annotations

from hpo.errors import RunError


class ServiceError(RunError):
    """A service could not be set up, started, checked or stopped; the message says why."""
