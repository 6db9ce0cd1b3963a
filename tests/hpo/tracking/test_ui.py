"""Links into the MLflow UI, `make ui`'s first line, and the experiment-kind tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.tracking import ui
from hpo.tracking.runs import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    experiment_id,
    tracking_client,
)
from hpo.tracking.settings import TrackingSettings

ML_VIEW = "?workflowType=machine_learning"


@pytest.mark.parametrize(
    ("base", "run_id", "url"),
    [
        ("http://127.0.0.1:5000", None, "http://127.0.0.1:5000/#/experiments/7/runs" + ML_VIEW),
        ("http://127.0.0.1:5000/", None, "http://127.0.0.1:5000/#/experiments/7/runs" + ML_VIEW),
        (
            "https://mlflow.example.org/team",
            "abc123",
            "https://mlflow.example.org/team/#/experiments/7/runs/abc123" + ML_VIEW,
        ),
    ],
)
def test_runs_url(base: str, run_id: str | None, url: str) -> None:
    assert ui.runs_url(base, "7", run_id) == url


def test_runs_url_needs_an_experiment_id() -> None:
    with pytest.raises(ValueError, match="experiment_id"):
        ui.runs_url(ui.LOCAL_UI, "")


@pytest.mark.parametrize(
    ("uri", "base"),
    [
        ("sqlite:////tmp/mlflow.db", ui.LOCAL_UI),
        ("postgresql://u:secret@db/mlflow", ui.LOCAL_UI),
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("https://user:secret@mlflow.example.org:8443/", "https://mlflow.example.org:8443"),
        ("http://user@10.0.0.2:5000/prefix", "http://10.0.0.2:5000/prefix"),
    ],
)
def test_ui_base_is_the_server_without_credentials_or_the_local_ui(uri: str, base: str) -> None:
    assert ui.ui_base(uri) == base


@pytest.mark.parametrize(
    ("uri", "hint"),
    [
        (f"sqlite:///{ui.PROJECT_STORE}", "`make ui`, then open"),
        ("http://127.0.0.1:5001", "open"),
        (
            "sqlite:////tmp/other/mlflow.db",
            "`mlflow ui --backend-store-uri sqlite:////tmp/other/mlflow.db --host 127.0.0.1 "
            "--port 5000`, then open",
        ),
        (
            "postgresql://u:secret@db/mlflow",
            "`mlflow ui --backend-store-uri <tracking URI> --host 127.0.0.1 --port 5000`, "
            "then open",
        ),
    ],
)
def test_how_to_open(uri: str, hint: str) -> None:
    assert ui.how_to_open(uri) == hint


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module: creating one takes MLflow seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('ui')}/mlflow.db"


def _kind(store: str, name: str) -> str | None:
    found = tracking_client(store).get_experiment_by_name(name)
    assert found is not None
    return found.tags.get(EXPERIMENT_KIND_TAG)


def test_a_new_experiment_is_tagged_as_model_training(store: str) -> None:
    settings = TrackingSettings(uri=store, experiment="new-exp")
    experiment_id(tracking_client(store), settings)
    assert _kind(store, "new-exp") == MODEL_TRAINING_KIND == "custom_model_development"


def test_an_existing_experiment_gets_the_tag_and_keeps_a_kind_set_by_others(store: str) -> None:
    client = tracking_client(store)
    client.create_experiment("old-exp")
    client.create_experiment("genai-exp", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name in ("old-exp", "genai-exp"):
        experiment_id(client, TrackingSettings(uri=store, experiment=name))
    assert _kind(store, "old-exp") == MODEL_TRAINING_KIND
    assert _kind(store, "genai-exp") == "genai_development"


def test_describe_links_the_experiment_or_says_how_to_create_it(store: str) -> None:
    client = tracking_client(store)
    exp_id = experiment_id(client, TrackingSettings(uri=store, experiment="linked"))
    text = ui.describe(TrackingSettings(uri=store, experiment="linked"), "http://127.0.0.1:5099")
    assert f"http://127.0.0.1:5099/#/experiments/{exp_id}/runs{ML_VIEW}" in text
    missing = ui.describe(TrackingSettings(uri=store, experiment="never-made"))
    assert "No experiment 'never-made'" in missing and "`make sweep`" in missing


def test_describe_does_not_create_a_missing_store(tmp_path: Path) -> None:
    text = ui.describe(TrackingSettings(uri=f"sqlite:///{tmp_path}/none.db"))
    assert "No experiment 'fashion-mnist'" in text  # the default from conf/tracking/
    assert not (tmp_path / "none.db").exists()


def test_main_reads_the_experiment_name_from_conf(store: str, capsys) -> None:
    client = tracking_client(store)
    exp_id = experiment_id(client, TrackingSettings(uri=store, experiment="fashion-mnist"))
    assert ui.main([f"tracking.uri={store}"]) == 0
    out = capsys.readouterr().out
    assert "'fashion-mnist'" in out
    assert f"{ui.LOCAL_UI}/#/experiments/{exp_id}/runs{ML_VIEW}" in out
