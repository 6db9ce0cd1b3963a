"""`make dashboard`: a storage without a study says what to run first, and creates nothing."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from hpo.sweep import dashboard
from hpo.urls import SecretUrl


def test_no_storage_file_says_run_make_sweep_and_creates_none(tmp_path) -> None:
    url = SecretUrl(f"sqlite:///{tmp_path}/optuna.db")
    with pytest.raises(dashboard.NoStudyError, match="run `make sweep` first"):
        dashboard.studies(url)
    assert not (tmp_path / "optuna.db").exists()


def test_a_storage_without_a_study_says_run_make_sweep(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.storages.RDBStorage(url)  # the tables, no study
    with pytest.raises(dashboard.NoStudyError, match=r"no study in .* yet: run `make sweep`"):
        dashboard.studies(SecretUrl(url))


def test_main_serves_a_storage_with_studies(tmp_path, monkeypatch, caplog) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="fmnist-quick", storage=url)
    served: dict[str, Any] = {}
    monkeypatch.setattr(
        dashboard.optuna_dashboard,
        "run_server",
        lambda storage, host, port: served.update(storage=storage, host=host, port=port),
    )
    caplog.set_level("INFO")
    dashboard.main([url, "--port", "8099"])
    assert (served["host"], served["port"]) == ("127.0.0.1", 8099)
    assert optuna.get_all_study_names(served["storage"]) == ["fmnist-quick"]
    assert "fmnist-quick" in caplog.text and "http://127.0.0.1:8099" in caplog.text


def test_main_exits_2_with_the_message(tmp_path, caplog) -> None:
    with pytest.raises(SystemExit) as stop:
        dashboard.main([f"sqlite:///{tmp_path}/optuna.db"])
    assert stop.value.code == 2
    assert "run `make sweep` first" in caplog.text
