"""`make dashboard`: Optuna's dashboard on a study storage, once the storage holds a study.

On a storage without a study (before the first `make sweep`) Optuna's dashboard would
create empty tables in a new SQLite file, or stop with a traceback that hides the reason;
this says what to run first instead.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import optuna
import optuna_dashboard

from hpo.errors import UsageError, exit_on_user_error
from hpo.paths import sqlite_database
from hpo.sweep.storage import open_storage
from hpo.urls import SecretUrl

log = logging.getLogger(__name__)


class NoStudyError(UsageError):
    """The storage holds no study yet."""


def studies(url: SecretUrl) -> list[str]:
    """The study names in the storage at `url`, creating nothing.

    Raises:
        NoStudyError: no storage file there, or a storage without a study.
        StorageUnavailableError: the storage cannot be opened.
    """
    database = sqlite_database(url)
    if database is not None and not database.exists():
        raise NoStudyError(f"no Optuna storage at {database} yet: run `make sweep` first")
    names = optuna.get_all_study_names(open_storage(url))
    if not names:
        raise NoStudyError(f"no study in {url} yet: run `make sweep` first")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hpo.sweep.dashboard", description=__doc__)
    parser.add_argument("storage", help="an Optuna storage URL (sqlite:///optuna.db, ...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = SecretUrl(args.storage)
    with exit_on_user_error(log):
        names = studies(url)
    log.info(
        "Optuna dashboard for %s (%s) on http://%s:%d (Ctrl-C stops it)",
        url,
        ", ".join(names),
        args.host,
        args.port,
    )
    optuna_dashboard.run_server(open_storage(url), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
