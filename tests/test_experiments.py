"""The named experiments (conf/experiment/) compose and run their search end to end.

Shrunk to synthetic data, tiny widths and 2 epochs: what is checked is the wiring (the
experiment's model, recipe, search space and pruner reach the trials), not accuracy, which
bench/README.md reports from real runs.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra_cli import run_train_cli
from optuna.trial import TrialState

from hpo.schema import register_configs

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_the_two_experiments_exist() -> None:
    assert EXPERIMENTS == ["accuracy", "quick"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_sets_the_recipe_and_replaces_the_whole_search_space(experiment: str) -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.model._target_ == "models.AirbenchNet" and cfg.model.whiten
    assert cfg.optimizer.nesterov and cfg.scheduler._target_.endswith("linear_warmup")
    assert cfg.trainer.tta and cfg.trainer.no_decay_norm_bias
    assert cfg.hydra.sweeper.study_name == f"fmnist-{experiment}"
    # The default CNN space (model.depth, model.width, ...) must not leak in: those keys do
    # not exist on this model.
    assert all(not key.startswith("model.") for key in cfg.hydra.sweeper.params)
    assert cfg.hydra.sweeper.params["trainer.epochs"] == cfg.trainer.epochs


@pytest.mark.parametrize(
    ("experiment", "pruner"),
    [("quick", "NopPruner"), ("accuracy", "SuccessiveHalvingPruner")],
)
def test_experiment_search_runs(
    experiment: str,
    pruner: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    code = run_train_cli(
        monkeypatch,
        "-m",
        f"experiment={experiment}",
        "data=synthetic",
        "model.widths=[8,16,16]",
        "model.bn_momentum=0.6",
        "trainer.epochs=2",
        "trainer.batch_size=64",
        "trainer.progress=false",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"hydra.sweep.dir={tmp_path}/multirun",
    )
    output = "".join(capfd.readouterr())
    assert code == 0, output
    assert f"pruner {pruner}," in output
    assert "Training" in output and "<models.AirbenchNet>" in output
    study = optuna.load_study(study_name=f"fmnist-{experiment}", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all("optimizer.lr" in t.params for t in study.trials)
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)
