"""Optuna's tables, created once by `start` so workers starting together never race to."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna

log = logging.getLogger(__name__)


def create_schema(storage_url: str, pgpass: Path) -> None:
    """Create (or check) Optuna's schema in the database of `storage_url`.

    The password comes from `pgpass` through libpq's `passfile` parameter, which is what
    PGPASSFILE sets for the workers; the URL carries none.
    """
    log.info("Creating Optuna's tables in %s", storage_url)
    storage = optuna.storages.RDBStorage(
        storage_url, engine_kwargs={"connect_args": {"passfile": str(pgpass)}}
    )
    storage.engine.dispose()  # close its pooled connections now, not at interpreter exit
