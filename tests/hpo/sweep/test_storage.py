from __future__ import annotations

from pathlib import Path

import pytest
from ports import free_port

from hpo.sweep.storage import StorageUnavailableError, open_storage


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
