"""Where the project lives on disk, and where a SQLite URL keeps its database file.

Hydra may change the working directory of a job; defaults such as the SQLite tracking
store and the data cache are anchored to the project folder instead, so every run of a
sweep writes to the same database wherever it runs.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hpo.urls import SecretUrl

# The project is installed editable from its checkout (see README), so the package's
# parent folder is the checkout.
PROJECT_ROOT: Path = Path(__file__).resolve().parents[1]


def sqlite_database(url: str | SecretUrl) -> Path | None:
    """The database file of a SQLite URL (`sqlite:///relative.db`, `sqlite:////abs.db`).

    None for other URLs, unparsable ones (their own client reports those) and in-memory
    SQLite.
    """
    try:
        # A SecretUrl's masked form will do: a SQLite URL has no password to mask.
        parsed = make_url(str(url))
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)
