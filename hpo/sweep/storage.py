"""Open an Optuna storage from a URL, with a clear error when it cannot be used."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial
from sqlalchemy.exc import DBAPIError

from hpo.errors import RunError, first_line
from hpo.paths import sqlite_database
from hpo.sweep.liveness import chosen_experimental
from hpo.urls import SecretUrl

log = logging.getLogger(__name__)

# SQLite serialises writers; parallel trials wait this long for the lock instead of failing
# with "database is locked".
SQLITE_LOCK_TIMEOUT_S = 60
# Workers that start together may race to create Optuna's tables in a new database (one
# gets "already exists"); the loser tries again this many times.
_CREATE_ATTEMPTS = 5
_RACE_MARKERS = ("already exists", "duplicate", "unique", "database is locked")

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class StorageUnavailableError(RunError):
    """The study storage cannot be opened."""


def open_storage(
    url: SecretUrl | str | None,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    on_stale: StaleCallback | None = None,
) -> BaseStorage:
    """An Optuna storage for `url` (None = in memory).

    With `heartbeat_interval`, trials beat and a trial silent for `grace_period` seconds
    counts as stale (`on_stale` is then called).

    Raises:
        StorageUnavailableError: naming the (masked) URL, the reason and the setting to fix.
    """
    if url is None:
        return optuna.storages.InMemoryStorage()
    url = SecretUrl(url)
    fix = (
        "fix hydra.sweeper.storage (e.g. sqlite:///optuna.db or "
        "postgresql+psycopg://user@host/db with the password in PGPASSFILE)"
    )
    database = sqlite_database(url)
    engine_kwargs: dict[str, Any]
    if database is not None:
        folder = database.resolve().parent
        if not folder.is_dir():
            raise StorageUnavailableError(
                f"cannot open the Optuna storage {url}: folder {folder} does not exist; {fix}"
            )
        engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
    else:
        # A server may drop idle connections (restarts, firewalls): test each before use.
        engine_kwargs = {"pool_pre_ping": True}
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            with chosen_experimental():  # heartbeats
                return RDBStorage(
                    url.reveal(),  # the driver connects: the one place that sees the password
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=on_stale,
                )
        except DBAPIError as exc:
            if attempt < _CREATE_ATTEMPTS and _is_creation_race(exc):
                log.info("another worker is creating the storage's tables; trying again")
                time.sleep(random.uniform(0.2, 1.0) * attempt)
                continue
            raise StorageUnavailableError(
                f"cannot open the Optuna storage {url}: {_reason(exc, url)}; {fix}"
            ) from exc
        except Exception as exc:
            raise StorageUnavailableError(
                f"cannot open the Optuna storage {url}: {_reason(exc, url)}; {fix}"
            ) from exc
    raise AssertionError("unreachable")


def _is_creation_race(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(marker in text for marker in _RACE_MARKERS)


def _reason(exc: BaseException, url: SecretUrl) -> str:
    """The driver's own first line: Optuna wraps database errors in its own generic ones
    (`StorageInternalError: An exception is raised during the commit...`, with the real one
    as the cause), and a DBAPIError's text repeats the SQL and a link around the driver's."""
    while exc.__cause__ is not None and not isinstance(exc, DBAPIError):
        exc = exc.__cause__
    return url.redact(first_line(getattr(exc, "orig", None) or exc))
