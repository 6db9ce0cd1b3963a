"""End to end on the real Fashion-MNIST (marked slow: about a minute each on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from hydra_cli import run_train_cli
from optuna.trial import TrialState

import train

# Minutes on 2 cores each: a longer per-test limit than the suite default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_seed_cnn_two_epochs_reaches_88_percent_validation(compose_cfg) -> None:
    cfg = compose_cfg(
        "model=seed_cnn",
        "trainer.epochs=2",
        "trainer.batch_size=128",
        "tracking.enabled=false",
        tiny=False,
    )
    assert cfg.data._target_ == "data.FashionMNISTData"
    val_acc = train.train(cfg)
    assert val_acc >= 0.88


def test_sweep_on_real_data_subset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    code = run_train_cli(
        monkeypatch,
        "-m",
        "hydra/sweeper=optuna",
        "data.train_subset=5000",
        "trainer.epochs=2",
        "model.depth=2",
        "model.width=16",
        "trainer.progress=false",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=real-subset",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"hydra.sweep.dir={tmp_path}/multirun",
    )
    assert code == 0
    study = optuna.load_study(study_name="real-subset", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.best_value > 0.75  # 5k images, 2 epochs: far above chance (0.10)
    results = yaml.safe_load((tmp_path / "multirun/optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)


def test_whole_chain_sweep_best_eval_predict(tmp_path: Path, monkeypatch, capsys) -> None:
    """A 2-trial sweep on the real data, its best-eval on the test set, predict on a PNG."""
    from hydra_cli import run_hydra_main
    from PIL import Image

    from hpo.retest import best_eval, predict

    storage, mlflow_uri = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    code = run_train_cli(
        monkeypatch,
        "-m",
        "hydra/sweeper=optuna",
        "data.train_subset=5000",
        "trainer.epochs=1",
        "model.width=16",
        "trainer.progress=false",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=chain",
        f"tracking.uri={mlflow_uri}",
        f"hydra.sweep.dir={tmp_path}/multirun",
    )
    assert code == 0
    code = run_hydra_main(
        monkeypatch,
        best_eval.main,
        "study=chain",
        f"storage={storage}",
        f"tracking.uri={mlflow_uri}",
        f"reports_dir={tmp_path}/reports",
        f"hydra.run.dir={tmp_path}/outputs",
    )
    assert code == 0
    report = yaml.safe_load((tmp_path / "reports/chain/report.json").read_text())
    assert report["test"]["num_samples"] == 10_000  # the official test set, all of it
    assert report["test"]["accuracy"] > 0.75
    assert abs(report["test"]["accuracy"] - report["val_acc"]) < 0.03

    # The real test set's first image is an ankle boot; as a PNG it must come back as one.
    from data.fashion_mnist import load_test_arrays

    images, labels = load_test_arrays(root=None, cache_dir=tmp_path / "cache", download=False)
    Image.fromarray(images[0].numpy()).resize((112, 112)).save(tmp_path / "boot.png")
    capsys.readouterr()
    assert predict.main([str(tmp_path / "boot.png"), "--tracking-uri", mlflow_uri]) == 0
    assert labels[0] == 9
    assert capsys.readouterr().out.split(": ")[1].startswith("Ankle boot")
