"""What a user can fix: one base class, caught once per entry point, printed as one message.

The pattern of Optuna's `OptunaError`: every error the project raises for bad input or an
unready environment derives from `UserError`, so an entry point (`train.py`, the sweeper,
`make best-eval`, `make predict`, `make services`) catches exactly one type, prints its
message (which says what was wrong and how to fix it) without a traceback, and exits with
its code:

- `UsageError`, exit 2: the command or the config is wrong (a key, a value, a search-space
  entry, a study name). Running it again unchanged fails the same way.
- `RunError`, exit 1: an environment error. The input is right but something it needs is
  not there or not working (the dataset files, the study storage, the tracking server, a
  service), or the run itself failed (a training that diverged, too many failed trials).

A leaf: the standard library only, so every room may import it, the plain-PyTorch
training room included. `data/` and `models/` stay free of `hpo`: their errors (a missing
or corrupt dataset file) are turned into these where `hpo` loads the data
(`hpo.builders`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

USAGE_EXIT = 2
ENVIRONMENT_EXIT = 1


class UserError(Exception):
    """Something the user can fix; the message says what and how."""

    exit_code: int = ENVIRONMENT_EXIT


class UsageError(UserError):
    """The command or the config is wrong (exit 2)."""

    exit_code = USAGE_EXIT


class RunError(UserError):
    """Something the command needs is missing or not working, or the run failed (exit 1)."""

    exit_code = ENVIRONMENT_EXIT


class DataError(RunError):
    """A dataset file is missing or corrupt (the message names the file and the fix)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of `exc`'s message, or its type name when it has none.

    For log lines about an error that is reported in full elsewhere (a server's error
    page, a database driver's multi-line message).
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


@contextmanager
def exit_on_user_error(log: logging.Logger) -> Iterator[None]:
    """Turn a `UserError` raised in the block into its message and `SystemExit(code)`.

    Anything else propagates with its traceback: that is a bug to report, not input to fix.
    """
    try:
        yield
    except UserError as exc:
        log.error("%s", exc)
        raise SystemExit(exc.exit_code) from None
