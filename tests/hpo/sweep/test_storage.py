from __future__ import annotations

from pathlib import Path

import pytest

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
