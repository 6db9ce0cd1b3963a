"""docs/images.py (`make docs-images`): the pictures it can draw without a browser, and what
it says when a picture's input is missing. The MLflow UI screenshot is drawn in the slow
browser test (tests/test_ui_browser.py), on a real sweep's store."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
from matplotlib.image import imread

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs"))
import images

from hpo.urls import SecretUrl


def test_the_workers_diagram_is_a_picture_of_the_expected_size(tmp_path: Path) -> None:
    path = images.workers_diagram(tmp_path)
    picture = imread(path)
    # 9.6 x 4.4 inches at 120 dpi, RGBA: not an empty or clipped canvas.
    assert picture.shape == (528, 1152, 4)
    assert picture[..., :3].std() > 0.05  # boxes and text, not a blank page


def test_the_history_plot_comes_from_the_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in (0.5, 0.7, 0.6):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": value},
                distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                value=value,
            )
        )
    path = images.optimization_history(SecretUrl(storage), "s", tmp_path)
    assert path.name == "optimization-history.png" and imread(path).shape[0] > 200


def test_a_missing_study_or_storage_names_the_command_that_makes_it(tmp_path: Path) -> None:
    missing = SecretUrl(f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(images.MissingInputError, match="make sweep"):
        images.optimization_history(missing, "fmnist-accuracy", tmp_path)
    assert not (tmp_path / "none.db").exists()  # nothing created on the way
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="other", storage=storage)
    with pytest.raises(images.MissingInputError, match="make sweep EXPERIMENT=accuracy"):
        images.optimization_history(SecretUrl(storage), "fmnist-accuracy", tmp_path)


def test_the_runs_table_needs_the_studys_runs_before_a_browser_starts(tmp_path: Path) -> None:
    from hpo.tracking.runs import tracking_client

    store = SecretUrl(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(images.MissingInputError, match="make sweep EXPERIMENT=accuracy"):
        images.mlflow_runs(store, "fmnist-accuracy", tmp_path)  # no experiment yet
    client = tracking_client(store)
    experiment = client.create_experiment(images.EXPERIMENT)
    client.create_run(experiment, run_name="fmnist-quick")  # another study's parent run
    with pytest.raises(images.MissingInputError, match="no MLflow run of study 'fmnist-acc"):
        images.mlflow_runs(store, "fmnist-accuracy", tmp_path)
    assert not (tmp_path / "mlflow-runs.png").exists()


def test_the_confusion_matrix_is_best_evals_or_says_to_run_it(tmp_path: Path) -> None:
    reports, out = tmp_path / "reports", tmp_path / "out"
    out.mkdir()
    with pytest.raises(images.MissingInputError, match="make best-eval STUDY=fmnist-quick"):
        images.confusion_matrix(reports, "fmnist-quick", out)
    (reports / "fmnist-quick").mkdir(parents=True)
    (reports / "fmnist-quick" / "confusion_matrix.png").write_bytes(b"\x89PNG made by best-eval")
    path = images.confusion_matrix(reports, "fmnist-quick", out)
    assert path == out / "confusion-matrix.png"
    assert path.read_bytes() == b"\x89PNG made by best-eval"


def test_the_command_line_exits_2_with_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["--out", str(tmp_path), "--reports", str(tmp_path), "--only", "confusion-matrix"]
    with pytest.raises(SystemExit) as exited:
        images.main([*argv, "--study", "fmnist-quick"])
    assert exited.value.code == 2
    assert "make best-eval STUDY=fmnist-quick" in caplog.text
