"""Open an Optuna storage from a URL, with a clear error when it cannot be used."""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage, RDBStorage

from hpo.paths import sqlite_database

# SQLite serialises writers; parallel trials wait this long for the lock instead of failing
# with "database is locked".
SQLITE_LOCK_TIMEOUT_S = 60


class StorageUnavailableError(RuntimeError):
    """The study storage cannot be opened."""


def open_storage(url: str | None) -> BaseStorage:
    """An Optuna storage for `url` (None = in memory).

    Raises:
        StorageUnavailableError: naming the URL, the reason and the setting to fix.
    """
    if url is None:
        return optuna.storages.InMemoryStorage()
    fix = "fix hydra.sweeper.storage (e.g. sqlite:///optuna.db or postgresql://user@host/db)"
    database = sqlite_database(url)
    try:
        if database is not None:
            folder = database.resolve().parent
            if not folder.is_dir():
                raise StorageUnavailableError(
                    f"cannot open the Optuna storage {url}: folder {folder} does not exist; {fix}"
                )
            return RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
            )
        return optuna.storages.get_storage(url)
    except StorageUnavailableError:
        raise
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageUnavailableError(
            f"cannot open the Optuna storage {url}: {reason}; {fix}"
        ) from exc
