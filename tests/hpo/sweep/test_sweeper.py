"""The Optuna sweeper end to end: real Hydra multiruns of train.py on synthetic data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra.plugins.sweeper import Sweeper
from hydra_cli import run_train_cli
from mlflow import MlflowClient
from optuna.trial import TrialState
from ports import free_port

from hpo.tracking.runs import tracking_client

ROOT = Path(__file__).resolve().parents[3]
# Tiny trials (conf/debug/tiny.yaml: 2 epochs on 512 synthetic images, an 8-channel CNN).
# The default space samples the model's size and the batch: fixed values on the command line
# take those dimensions out of it, at debug=tiny's sizes.
TINY = (
    "debug=tiny",
    "model.width=8",
    "model.depth=2",
    "trainer.batch_size=64",
    "optimizer.weight_decay=0.0",
)


class Sweep:
    """Runs `train.py -m hydra/sweeper=optuna` in this process with tmp_path stores."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.storage = f"sqlite:///{tmp_path}/optuna.db"
        self.mlflow = f"sqlite:///{tmp_path}/mlflow.db"
        self.study_name = "test-study"

    def args(self, *extra: str, n_trials: int = 3) -> list[str]:
        return [
            "-m",
            "hydra/sweeper=optuna",
            *TINY,
            f"hydra.sweeper.storage={self.storage}",
            f"hydra.sweeper.study_name={self.study_name}",
            f"hydra.sweeper.n_trials={n_trials}",
            f"tracking.uri={self.mlflow}",
            f"hydra.sweep.dir={self.tmp}/multirun",
            "hydra.sweeper.params={model.dropout: 'interval(0.0, 0.5)', "
            "optimizer.lr: 'tag(log, interval(1e-3, 1e-2))'}",
            *extra,
        ]

    def run(self, *extra: str, n_trials: int = 3, monkeypatch: pytest.MonkeyPatch) -> int:
        return run_train_cli(monkeypatch, *self.args(*extra, n_trials=n_trials))

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=self.study_name, storage=self.storage)

    def results(self) -> dict:
        return yaml.safe_load((self.tmp / "multirun/optimization_results.yaml").read_text())

    def runs(self) -> tuple[MlflowClient, list]:
        client = tracking_client(self.mlflow)
        experiment = client.get_experiment_by_name("fashion-mnist")
        return client, client.search_runs([experiment.experiment_id])


@pytest.fixture
def sweep(tmp_path: Path) -> Sweep:
    return Sweep(tmp_path)


def _output(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    return out + err


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.trials]


def test_three_trials_agree_across_storage_results_and_mlflow(sweep, monkeypatch) -> None:
    assert sweep.run("hydra.sweeper.direction=maximize", monkeypatch=monkeypatch) == 0
    study = sweep.study()
    assert _states(study) == [TrialState.COMPLETE] * 3
    results = sweep.results()
    assert results["best_value"] == pytest.approx(study.best_value)
    assert results["best_params"] == study.best_params
    assert set(results["best_params"]) == {"model.dropout", "optimizer.lr"}

    client, runs = sweep.runs()
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "study"]
    children = [r for r in runs if r.data.tags.get("sweep_role") != "study"]
    assert len(parents) == 1 and parents[0].info.run_name == sweep.study_name
    parent = parents[0]
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert sorted(r.info.run_name for r in children) == [
        f"{sweep.study_name}-trial-{n:04d}" for n in range(3)
    ]
    for child in children:
        number = int(child.data.tags["trial_number"])
        trial = study.trials[number]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["trial_state"] == "COMPLETE"
        assert child.data.metrics["best/val/acc"] == pytest.approx(trial.value)
        assert float(child.data.params["optimizer.lr"]) == pytest.approx(
            trial.params["optimizer.lr"]
        )
        # The job reported every epoch to its trial.
        assert sorted(trial.intermediate_values) == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"optimization_results.yaml", "trials.csv", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots


SPACE = {
    "model.dropout": optuna.distributions.FloatDistribution(0, 0.5),
    "optimizer.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True),
}
# Heartbeats fast enough for a test: a lost trial is stale after 2 s.
FAST_BEATS = ("hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2")


def test_pruned_trial_stops_early(sweep, monkeypatch) -> None:
    # A good trial first, then a hopeless one (lr 1e-7): the median pruner stops it.
    study = optuna.create_study(
        study_name=sweep.study_name, storage=sweep.storage, direction="maximize"
    )
    study.enqueue_trial({"model.dropout": 0.0, "optimizer.lr": 0.01})
    study.enqueue_trial({"model.dropout": 0.0, "optimizer.lr": 1e-7})
    code = sweep.run(
        "trainer.epochs=4",
        "hydra.sweeper.direction=maximize",
        "hydra.sweeper.params={model.dropout: 'interval(0.0, 0.5)', "
        "optimizer.lr: 'tag(log, interval(1e-7, 1e-2))'}",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        n_trials=2,
        monkeypatch=monkeypatch,
    )
    assert code == 0
    good, bad = sweep.study().trials
    assert good.state == TrialState.COMPLETE and sorted(good.intermediate_values) == [1, 2, 3, 4]
    assert bad.state == TrialState.PRUNED
    assert len(bad.intermediate_values) < 4
    _, runs = sweep.runs()
    child = next(r for r in runs if r.data.tags.get("trial_number") == "1")
    assert child.data.tags["trial_state"] == "PRUNED"
    assert child.info.status == "FINISHED"


def test_failures_beyond_the_rate_stop_the_sweep_naming_trials(sweep, monkeypatch, capfd) -> None:
    code = sweep.run(
        "optimizer=sgd",
        "scheduler=none",
        "hydra.sweeper.params={optimizer.lr: 'choice(1e30)'}",
        "hydra.sweeper.max_failure_rate=0.0",
        n_trials=3,
        monkeypatch=monkeypatch,
    )
    assert code == 1
    study = sweep.study()
    assert _states(study) == [TrialState.FAIL]  # stopped at the first failure
    assert "diverged" in study.trials[0].user_attrs["error"]
    assert "trial 0: TrainingDivergedError" in _output(capfd)
    _, runs = sweep.runs()
    child = next(r for r in runs if "trial_number" in r.data.tags)
    assert child.info.status == "FAILED" and child.data.tags["trial_state"] == "FAIL"


def test_several_objectives_give_a_pareto_front(sweep, monkeypatch) -> None:
    code = sweep.run(
        "objective=[val/acc,model/params]",
        "hydra.sweeper.direction=[maximize,minimize]",
        "model.width=choice(4,8,16)",
        n_trials=3,
        monkeypatch=monkeypatch,
    )
    assert code == 0
    study = sweep.study()
    results = sweep.results()
    front = {t.number for t in study.best_trials}
    assert {s["number"] for s in results["solutions"]} == front
    for solution in results["solutions"]:
        assert solution["values"] == study.trials[solution["number"]].values


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("model.widht=choice(8,16)", "did you mean 'model.width'"),
        ("model.width=range(8,8)", "model.width=range(8,8)"),
        ("optimizer=choice(adam,adagrad)", "adagrad"),
        # Errors every trial would hit, found on the first point's job config.
        ("+model.widht=choice(8,16)", "model.widht is not a setting of models.CNN"),
        ("trainer.epochs=choice(a,b)", "Value 'a' of type 'str' could not be converted"),
        ("objective=[val/acc,model/params]", "has 2 metric(s) but"),
    ],
)
def test_bad_search_space_fails_before_any_trial(sweep, monkeypatch, capfd, entry, message) -> None:
    assert sweep.run(entry, monkeypatch=monkeypatch) == 2  # a usage error
    output = _output(capfd)
    assert message in output and "Traceback" not in output
    with pytest.raises(KeyError):
        sweep.study()


def test_unusable_storage_fails_at_once(sweep, monkeypatch, capfd) -> None:
    bad = f"sqlite:///{sweep.tmp}/missing/folder/optuna.db"
    assert sweep.run(f"hydra.sweeper.storage={bad}", monkeypatch=monkeypatch) == 1
    assert f"cannot open the Optuna storage {bad}" in _output(capfd)


def test_unreachable_postgresql_fails_at_once_with_the_password_masked(
    sweep, monkeypatch, capfd
) -> None:
    url = f"postgresql+psycopg://fmnist:s3cret-pw@127.0.0.1:{free_port()}/optuna"
    assert sweep.run(f"hydra.sweeper.storage={url}", monkeypatch=monkeypatch) == 1
    output = _output(capfd)
    assert "cannot open the Optuna storage postgresql+psycopg://fmnist:***@127.0.0.1:" in output
    assert "Connection refused" in output or "connection failed" in output
    assert "s3cret-pw" not in output


def test_unreachable_tracking_server_stops_the_sweep_before_any_trial(
    sweep, monkeypatch, capfd
) -> None:
    server = f"http://user:s3cret-pw@127.0.0.1:{free_port()}"
    assert sweep.run(f"tracking.uri={server}", monkeypatch=monkeypatch) == 1
    output = _output(capfd)
    assert "cannot reach the MLflow tracking server at http://user:***@127.0.0.1:" in output
    assert "s3cret-pw" not in output
    assert sweep.study().trials == []


def test_plugin_is_discovered() -> None:
    # What `python train.py --info plugins` lists, without starting a process for it.
    plugins = Plugins.instance()
    assert "OptunaSweeper" in {c.__name__ for c in plugins.discover(Sweeper)}
    assert "FmnistHpoSearchPathPlugin" in {c.__name__ for c in plugins.discover(SearchPathPlugin)}


GENERIC_APP = """
import hydra


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    return (cfg.x - 2.0) ** 2 + (cfg.y - 1) ** 2


if __name__ == "__main__":
    main()
"""


def test_any_hydra_app_can_use_the_sweeper_with_the_upstream_config(tmp_path) -> None:
    """A plain app with no `hpo` or `tracking` node, configured like the upstream plugin."""
    (tmp_path / "app.py").write_text(GENERIC_APP)
    (tmp_path / "config.yaml").write_text(
        "defaults:\n  - override hydra/sweeper: optuna\n  - override hydra/sweeper/sampler: tpe\n"
        "x: 0.0\ny: 0\nhydra:\n  sweeper:\n    direction: minimize\n    study_name: generic\n"
        "    n_trials: 6\n    n_jobs: 1\n    sampler:\n      seed: 1\n"
        "    params:\n      x: interval(-5.0, 5.0)\n      y: range(-2, 4)\n"
    )
    result = subprocess.run(
        [sys.executable, "app.py", "-m", f"hydra.sweep.dir={tmp_path}/out"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "out/optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"x", "y"}
    assert -2 <= results["best_params"]["y"] <= 3  # range() excludes its stop, as in Hydra
    assert results["best_value"] >= 0
    assert not (tmp_path / "mlflow.db").exists()  # no tracking for apps that do not take part
