from __future__ import annotations

from pathlib import Path

import pytest
from optuna.exceptions import StorageInternalError
from ports import free_port
from sqlalchemy.exc import OperationalError

from hpo.sweep.storage import StorageUnavailableError, _reason, open_storage
from hpo.urls import SecretUrl


def test_sqlite_storage_in_a_missing_folder_names_url_and_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nope/optuna.db"
    with pytest.raises(
        StorageUnavailableError, match=r"nope.*does not exist.*hydra\.sweeper\.storage"
    ):
        open_storage(url)


def test_unknown_backend_fails_with_the_url(tmp_path: Path) -> None:
    url = "nosuchdb://user@127.0.0.1:1/db"
    with pytest.raises(
        StorageUnavailableError, match=r"cannot open the Optuna storage nosuchdb://"
    ):
        open_storage(url)


def test_sqlite_storage_opens(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    assert storage.get_all_studies() == []
    assert (tmp_path / "optuna.db").exists()


def test_unreachable_server_gives_the_drivers_first_line_with_the_password_masked() -> None:
    url = f"postgresql+psycopg://fmnist:s3cret-pw@127.0.0.1:{free_port()}/optuna"
    with pytest.raises(StorageUnavailableError) as caught:
        open_storage(url)
    message = str(caught.value)
    assert message.startswith("cannot open the Optuna storage postgresql+psycopg://fmnist:***@")
    assert "Connection refused" in message or "connection failed" in message
    # One line: the driver's reason, not SQLAlchemy's multi-line text with its SQL and link.
    assert "\n" not in message and "sqlalche.me" not in message
    assert "s3cret-pw" not in message


def test_the_reason_is_the_drivers_under_optunas_own_wrapper() -> None:
    # What a worker past PostgreSQL's max_connections saw: Optuna's generic commit error,
    # with the server's message two causes down.
    driver = RuntimeError("FATAL: remaining connection slots are reserved for s3cret-pw\nmore")
    try:
        try:
            raise OperationalError("SELECT 1", {}, driver)
        except OperationalError as exc:
            raise StorageInternalError("An exception is raised during the commit.") from exc
    except StorageInternalError as wrapped:
        reason = _reason(wrapped, SecretUrl("postgresql+psycopg://u:s3cret-pw@h/db"))
    assert reason == "FATAL: remaining connection slots are reserved for ***"
