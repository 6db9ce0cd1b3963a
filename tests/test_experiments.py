"""The named experiments (conf/experiment/) compose and run their search end to end.

Shrunk by `debug=tiny` (synthetic data, a tiny model, 2 epochs): what is checked is the wiring
(the experiment's model, recipe, search space and pruner reach the trials), not accuracy,
which bench/README.md reports from real runs. The search spaces
(conf/hydra/sweeper/params/) hold only sampled dimensions, so a fixed setting such as the
epochs lives once, in the experiment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra_cli import run_train_cli
from mlflow import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.schema import register_configs
from hpo.sweep.search_space import parse_search_space

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
SPACES = sorted((CONF_DIR / "hydra/sweeper/params").glob("*.yaml"))


def _compose(*overrides: str) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_the_two_experiments_exist() -> None:
    assert EXPERIMENTS == ["accuracy", "quick"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_sets_the_recipe_and_replaces_the_whole_search_space(experiment: str) -> None:
    cfg = _compose(f"experiment={experiment}")
    assert cfg.model._target_ == "models.AirbenchNet" and cfg.model.whiten
    assert cfg.optimizer.nesterov and cfg.scheduler._target_.endswith("linear_warmup")
    assert cfg.trainer.tta and cfg.trainer.no_decay_norm_bias
    assert cfg.hydra.sweeper.study_name == f"fmnist-{experiment}"
    # The default CNN space (model.depth, model.width, ...) must not leak in: those keys do
    # not exist on this model.
    assert all(not key.startswith("model.") for key in cfg.hydra.sweeper.params)


def test_the_quick_search_is_a_tpe_search_that_starts_from_its_recipe() -> None:
    cfg = _compose("experiment=quick")
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert isinstance(sweeper, dict)
    assert sweeper["sampler"]["n_startup_trials"] < sweeper["n_trials"]
    recipe = {
        "optimizer.lr": cfg.optimizer.lr,
        "optimizer.weight_decay": cfg.optimizer.weight_decay,
    }
    assert sweeper["enqueue_trials"] == [recipe]


@pytest.mark.parametrize("space", SPACES, ids=lambda path: path.stem)
def test_search_spaces_hold_only_sampled_dimensions(space: Path) -> None:
    params = OmegaConf.to_container(OmegaConf.load(space))
    assert isinstance(params, dict) and params
    parsed = parse_search_space(params)
    # A fixed value here would override the experiment's own setting in every trial.
    assert parsed.fixed == {}
    assert list(parsed.distributions) == list(params)
    assert all(isinstance(d, BaseDistribution) for d in parsed.distributions.values())


def _a_point(distributions: dict[str, BaseDistribution]) -> dict[str, Any]:
    """One value per sampled dimension: the first choice or the low end."""
    point: dict[str, Any] = {}
    for key, dist in distributions.items():
        if isinstance(dist, CategoricalDistribution):
            point[key] = dist.choices[0]
        else:
            assert isinstance(dist, IntDistribution | FloatDistribution), dist
            point[key] = dist.low
    return point


@pytest.mark.parametrize(
    ("select", "defines_epochs"),
    [
        *[(f"experiment={e}", CONF_DIR / f"experiment/{e}.yaml") for e in EXPERIMENTS],
        ("hydra/sweeper=optuna", CONF_DIR / "trainer/default.yaml"),
    ],
    ids=[*EXPERIMENTS, "default-search"],
)
def test_the_configs_epochs_reach_the_sweeps_trials(select: str, defines_epochs: Path) -> None:
    cfg = _compose(select)
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    space = parse_search_space(OmegaConf.to_container(cfg.hydra.sweeper.params), config=job)
    assert "trainer.epochs" not in space.distributions and "trainer.epochs" not in space.fixed
    # A trial's job config: the sampled values on top of the same selection.
    trial = _compose(select, *space.to_overrides(_a_point(space.distributions)))
    node = OmegaConf.load(defines_epochs)
    expected = node.trainer.epochs if "trainer" in node else node.epochs
    assert trial.trainer.epochs == expected


# quick: whole trials, each reporting its two epochs (no pruner acts on them). accuracy:
# multi-fidelity, shrunk by conf/debug/experiment/tiny_accuracy.yaml to rungs of 1 and 2
# epochs: two 1-epoch runs, then the better one again at 2 epochs, the only COMPLETE run.
@pytest.mark.parametrize(
    ("experiment", "n_trials", "states", "epochs"),
    [
        ("quick", 2, ["COMPLETE", "COMPLETE"], [2, 2]),
        ("accuracy", 3, ["PRUNED", "PRUNED", "COMPLETE"], [1, 1, 2]),
    ],
)
def test_experiment_search_runs(
    experiment: str,
    n_trials: int,
    states: list[str],
    epochs: list[int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    code = run_train_cli(
        monkeypatch,
        "-m",
        f"experiment={experiment}",
        "debug=tiny",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.storage={storage}",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"hydra.sweep.dir={tmp_path}/multirun",
    )
    output = "".join(capfd.readouterr())
    assert code == 0, output
    assert "pruner NopPruner," in output
    assert "Training" in output and "<models.AirbenchNet>" in output
    # debug=tiny's synthetic data keeps the search out of the real study.
    assert optuna.get_all_study_names(storage) == [f"fmnist-{experiment}-synthetic"]
    study = optuna.load_study(study_name=f"fmnist-{experiment}-synthetic", storage=storage)
    trials = study.trials
    assert [t.state.name for t in trials] == states
    # Trial 0 is the recipe's defaults (warm start).
    assert trials[0].params["optimizer.lr"] == 0.1
    assert trials[0].params["optimizer.weight_decay"] == 0.0005
    # Each trial's MLflow run trained the epochs of its budget.
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.get_experiment_by_name("fashion-mnist").experiment_id
    runs = sorted(
        (r for r in client.search_runs([experiment_id]) if "trial_number" in r.data.tags),
        key=lambda r: int(r.data.tags["trial_number"]),
    )
    assert [int(r.data.params["trainer.epochs"]) for r in runs] == epochs
    if experiment == "quick":
        assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    else:
        better = max(trials[:2], key=lambda t: t.value)
        assert trials[2].params == better.params
        assert trials[2].user_attrs["fidelity_promoted_from"] == better.number
        assert study.best_trial.number == 2
        tags = runs[2].data.tags
        assert (tags["fidelity_rung"], tags["promoted_from_trial"]) == ("1", str(better.number))
