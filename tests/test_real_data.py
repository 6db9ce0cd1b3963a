"""End to end on the real Fashion-MNIST (marked slow: about a minute each on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from conftest import run_train_cli
from optuna.trial import TrialState

import train

pytestmark = pytest.mark.slow


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
