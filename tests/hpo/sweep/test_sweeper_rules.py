"""The sweeper's rules, through the toy task (tests/toy_app): no torch, no data, milliseconds.

Budgets (n_trials across reruns, timeout, the grid), failures (NaN, exceptions, the failure
rate and its cap), pruning, heartbeats and retries, results that come back after another
worker failed their trial, and several workers on one SQLite study. The training app's
own sweeps (MLflow child runs, real pruning of a training) are in test_sweeper.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hydra_cli import run_hydra_main
from mlflow import MlflowClient
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from toy_app import app as toy
from toy_app.harness import ToySweep, run_worker_processes

from hpo.sweep import sweeper as sweeper_module
from hpo.sweep.liveness import RUN_ID_ATTR, WORKER_ATTR, orphan_trials, running_trials
from hpo.sweep.progress import Outcome
from hpo.sweep.trial_link import TrialLink

ROOT = Path(__file__).resolve().parents[3]
TOY_APP = ROOT / "tests" / "toy_app" / "app.py"
# A lost trial is stale after 2 s.
FAST_BEATS = ("hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2")
SPACE = {
    "x": optuna.distributions.FloatDistribution(-1.0, 1.0),
    "y": optuna.distributions.IntDistribution(0, 3),
}


def _output(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    return out + err


# --- budgets ----------------------------------------------------------------------------


def test_n_trials_is_the_study_total_across_reruns(toy_sweep) -> None:
    assert toy_sweep.run(n_trials=2) == 0
    assert toy_sweep.run(n_trials=2) == 0  # nothing missing: no trial
    assert toy_sweep.states() == [TrialState.COMPLETE] * 2
    assert toy_sweep.run(n_trials=4) == 0
    study = toy_sweep.study()
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.value == pytest.approx(toy.objective(**t.params)) for t in study.trials)
    results = yaml.safe_load((toy_sweep.tmp / "multirun/optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)
    assert results["best_trial"] == study.best_trial.number


def test_pruned_trials_count_towards_the_budget(toy_sweep) -> None:
    study = optuna.create_study(
        study_name=toy_sweep.name, storage=toy_sweep.storage, direction="minimize"
    )
    study.enqueue_trial({"x": 0.3, "y": 0})  # the optimum: never pruned
    study.enqueue_trial({"x": -1.0, "y": 3})  # far worse at every step: pruned at step 1
    code = toy_sweep.run(
        "steps=3",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        n_trials=2,
    )
    assert code == 0
    good, bad = toy_sweep.study().trials
    assert good.state == TrialState.COMPLETE and sorted(good.intermediate_values) == [1, 2, 3]
    assert bad.state == TrialState.PRUNED and sorted(bad.intermediate_values) == [1]


def test_timeout_stops_new_trials_and_a_rerun_continues(toy_sweep, capfd) -> None:
    assert toy_sweep.run("sleep=0.3", "hydra.sweeper.timeout=0.5", n_trials=10) == 0
    first = len(toy_sweep.study().trials)
    assert 1 <= first < 10
    assert "timeout of 0 s reached: no new trials" in _output(capfd)
    assert toy_sweep.run(n_trials=first + 2) == 0
    assert toy_sweep.states() == [TrialState.COMPLETE] * (first + 2)


def test_the_grid_caps_n_trials_at_its_size(toy_sweep, capfd) -> None:
    code = toy_sweep.run(
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.params={x: 'choice(0.1, 0.5)', y: 'range(0, 2)'}",
        n_trials=10,
    )
    assert code == 0
    study = toy_sweep.study()
    assert sorted((t.params["x"], t.params["y"]) for t in study.trials) == [
        (0.1, 0),
        (0.1, 1),
        (0.5, 0),
        (0.5, 1),
    ]
    assert "grid has 4 points: n_trials 10 -> 4" in _output(capfd)


# --- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "error"),
    [("nonfinite", "returned nan (not finite)"), ("raise", "ToyTaskError: the toy task failed")],
)
def test_a_failed_trial_stops_the_sweep_at_rate_zero(toy_sweep, capfd, outcome, error) -> None:
    code = toy_sweep.run(f"outcome={outcome}", "hydra.sweeper.max_failure_rate=0.0")
    assert code == 1
    (trial,) = toy_sweep.study().trials  # stopped at the first failure
    assert trial.state == TrialState.FAIL
    assert error in trial.user_attrs["error"]
    output = _output(capfd)
    assert "1 of 1 trials failed, more than max_failure_rate=0.0" in output
    assert f"trial 0: {error}" in output
    assert "Traceback" not in output


def _enqueue_x(sweep: ToySweep, *xs: float) -> None:
    study = optuna.create_study(study_name=sweep.name, storage=sweep.storage)
    for x in xs:
        study.enqueue_trial({"x": x, "y": 0})


def test_tolerated_failures_do_not_count_towards_the_budget(toy_sweep) -> None:
    _enqueue_x(toy_sweep, 0.9, -0.5, 0.8, -0.2)
    code = toy_sweep.run("fail_above=0.5", "hydra.sweeper.max_failure_rate=1.0", n_trials=3)
    assert code == 0
    study = toy_sweep.study()
    assert [t.state for t in study.trials[:4]] == [
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert "above fail_above=0.5" in study.trials[0].user_attrs["error"]


def test_a_sweep_whose_every_trial_fails_ends_after_n_trials_failures(toy_sweep, capfd) -> None:
    # max_failure_rate=1.0 tolerates every failure; without a cap this sweep never ended.
    code = toy_sweep.run("outcome=raise", "hydra.sweeper.max_failure_rate=1.0", n_trials=3)
    assert code == 1
    assert toy_sweep.states() == [TrialState.FAIL] * 3
    assert "3 of 3 trials failed, the last 3 in a row (n_trials=3)" in _output(capfd)


def test_the_failure_rate_is_judged_after_every_trial(toy_sweep, capfd) -> None:
    # 0/1, then 1/2 (not above 0.5: go on), then 1/3.
    _enqueue_x(toy_sweep, -0.5, 0.9, -0.2)
    code = toy_sweep.run("fail_above=0.5", "hydra.sweeper.max_failure_rate=0.5", n_trials=2)
    assert code == 0
    assert toy_sweep.states() == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    # The same order at a lower rate stops at the failure: 1/2 is above 0.4.
    toy_sweep.name = "toy-rules-2"
    _enqueue_x(toy_sweep, -0.5, 0.9)
    code = toy_sweep.run("fail_above=0.5", "hydra.sweeper.max_failure_rate=0.4", n_trials=2)
    assert code == 1
    assert toy_sweep.states() == [TrialState.COMPLETE, TrialState.FAIL]
    assert "1 of 2 trials failed, more than max_failure_rate=0.4" in _output(capfd)


# --- errors every trial would hit -------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("+widht=choice(1,2)", "widht: not a setting of the toy task"),
        ("hydra.sweeper.direction=[minimize,maximize]", "has 1 metric(s) but"),
    ],
)
def test_a_config_error_every_trial_would_hit_stops_before_trial_0(
    toy_sweep, capfd, entry, message
) -> None:
    code = toy_sweep.run("hydra.sweeper.check_job_config=toy_app.app.check", entry)
    assert code == 2  # a usage error
    output = _output(capfd)
    assert message in output and "Traceback" not in output
    assert "max_failure_rate" not in output  # not reported as failed trials
    assert not (toy_sweep.tmp / "optuna.db").exists()  # no study, no trial


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0 must be an integer >= 1"),
        ("hydra.sweeper.max_failure_rate=2", "must be in [0, 1]"),
        ("hydra.sweeper.grace_period=1", "must exceed heartbeat_interval"),
        ("hydra.sweeper.check_job_config=no.such.fn", "cannot be imported"),
    ],
)
def test_bad_sweeper_settings_are_usage_errors(toy_sweep, capfd, entry, message) -> None:
    assert run_hydra_main(toy_sweep.monkeypatch, toy.main, *toy_sweep.args(entry)) == 2
    output = _output(capfd)
    assert message in output and "Traceback" not in output


def test_a_direction_that_does_not_fit_the_study_is_a_usage_error(toy_sweep, capfd) -> None:
    assert toy_sweep.run(n_trials=1) == 0
    assert toy_sweep.run("hydra.sweeper.direction=maximize", n_trials=2) == 2
    output = _output(capfd)
    assert "was created with directions ['minimize'], not ['maximize']" in output
    assert "Traceback" not in output
    assert len(toy_sweep.study().trials) == 1


def test_an_existing_study_without_load_if_exists_is_a_usage_error(toy_sweep, capfd) -> None:
    assert toy_sweep.run(n_trials=1) == 0
    assert toy_sweep.run("hydra.sweeper.load_if_exists=false", n_trials=2) == 2
    output = _output(capfd)
    assert "already exists" in output and "load_if_exists=false" in output
    assert "Traceback" not in output


# --- running, orphans, heartbeats and retries -------------------------------------------


def test_an_orphan_holds_no_budget_and_the_parent_run_ends(toy_sweep, capfd) -> None:
    # A RUNNING trial with no owner (what versions before heartbeats left after a crash):
    # reported with the command that clears it, never failed on a guess, and neither the
    # budget nor the parent MLflow run waits for it.
    tracking = f"sqlite:///{toy_sweep.tmp}/mlflow.db"
    track = ("+tracking.enabled=true", f"+tracking.uri={tracking}")
    assert toy_sweep.run(*track, n_trials=1) == 0
    orphan = toy_sweep.study().ask(SPACE)
    assert toy_sweep.run(*track, *FAST_BEATS, n_trials=2) == 0
    study = toy_sweep.study()
    assert [t.number for t in orphan_trials(study)] == [orphan.number]
    assert running_trials(study) == []
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    output = _output(capfd)
    assert f"trial {orphan.number} of study '{toy_sweep.name}' is RUNNING but has no" in output
    assert f"--trial-number {orphan.number} --state fail" in output
    client = MlflowClient(tracking_uri=tracking)
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("fashion-mnist").experiment_id],
        filter_string="tags.sweep_role = 'study'",
    )
    assert parent.info.status == "FINISHED"


def test_running_counts_owned_trials_only(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    owned, orphan = study.ask(SPACE), study.ask(SPACE)
    owned.set_user_attr(WORKER_ATTR, "host:1")
    done = study.ask(SPACE)
    done.set_user_attr(WORKER_ATTR, "host:1")
    study.tell(done, 1.0)
    assert [t.number for t in running_trials(study)] == [owned.number]
    assert [t.number for t in orphan_trials(study)] == [orphan.number]


def test_the_trial_of_a_dead_worker_is_retried_within_the_budget(toy_sweep) -> None:
    assert toy_sweep.run(n_trials=1) == 0
    storage = optuna.storages.RDBStorage(toy_sweep.storage, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name=toy_sweep.name, storage=storage)
    with pytest.warns(UserWarning, match="supposed to be used with Study.optimize"):
        lost = study.ask(SPACE)
    lost.set_user_attr(WORKER_ATTR, "gone-host:1")
    lost.set_user_attr(RUN_ID_ATTR, "run-of-the-lost-trial")
    storage.record_heartbeat(lost._trial_id)
    time.sleep(2.5)
    links: dict[int, Any] = {}
    plain = toy.run

    def remember_link(cfg: Any) -> float:
        links[cfg.hpo.trial_number] = TrialLink.from_config(cfg)
        return plain(cfg)

    toy_sweep.monkeypatch.setattr(toy, "run", remember_link)

    assert toy_sweep.run(*FAST_BEATS, n_trials=3) == 0
    study = toy_sweep.study()
    assert study.trials[lost.number].state == TrialState.FAIL
    retries = [
        t
        for t in study.trials
        if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == lost.number
    ]
    assert len(retries) == 1 and retries[0].params == lost.params
    assert retries[0].state == TrialState.COMPLETE
    # The retry replaces the lost trial: 3 finished in all, one of them the retry.
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    # Its job learns what it retries, to link its MLflow run to the lost one.
    link = links[retries[0].number]
    assert link.retry_of == lost.number and link.retry_of_run_id == "run-of-the-lost-trial"
    assert link.tags["retry_of_trial"] == str(lost.number)
    assert all(links[n].retry_of is None for n in links if n != retries[0].number)


def test_retries_stop_at_max_retry(toy_sweep) -> None:
    assert toy_sweep.run(n_trials=1) == 0
    storage = optuna.storages.RDBStorage(toy_sweep.storage, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name=toy_sweep.name, storage=storage)
    with pytest.warns(UserWarning, match="supposed to be used with Study.optimize"):
        lost = study.ask(SPACE)
    lost.set_user_attr(WORKER_ATTR, "gone-host:1")
    storage.record_heartbeat(lost._trial_id)
    time.sleep(2.5)
    assert toy_sweep.run(*FAST_BEATS, "hydra.sweeper.max_retry=0", n_trials=2) == 0
    study = toy_sweep.study()
    assert study.trials[lost.number].state == TrialState.FAIL
    assert not any(
        RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == lost.number
        for t in study.trials
    )


# --- a result that comes back after another worker failed its trial ------------------------


def _fail_own_trial_first(then: Callable[[Any], float], storage_url: str) -> Callable[[Any], float]:
    """A task whose trial 0 is failed from a second storage connection while it runs (what
    another worker does when this one was out of reach for longer than the grace period),
    and then does `then`; the other trials run the toy task as it is."""
    plain = toy.run

    def task(cfg: Any) -> float:
        if cfg.hpo.trial_number != 0:
            return plain(cfg)
        other = optuna.storages.RDBStorage(storage_url)
        study_id = other.get_study_id_from_name(cfg.hpo.study_name)
        trial_id = other.get_trial_id_from_study_id_trial_number(study_id, 0)
        other.set_trial_state_values(trial_id, TrialState.FAIL)
        return then(cfg)

    return task


def _raise(cfg: Any) -> float:
    raise toy.ToyTaskError("lost in the network")


def _prune(cfg: Any) -> float:
    raise optuna.TrialPruned("pruned at step 1")


@pytest.mark.parametrize(
    ("result", "then", "extra"),
    [
        ("COMPLETE", toy.run, ("steps=0",)),
        ("FAIL", _raise, ()),
        ("FAIL", toy.run, ("steps=2",)),  # its report hits the finished trial and fails
        ("PRUNED", _prune, ()),
    ],
)
def test_a_result_for_a_trial_failed_elsewhere_is_dropped(
    toy_sweep, capfd, result, then, extra
) -> None:
    toy_sweep.monkeypatch.setattr(toy, "run", _fail_own_trial_first(then, toy_sweep.storage))
    assert toy_sweep.run(*extra, "hydra.sweeper.max_failure_rate=0.0", n_trials=2) == 0
    study = toy_sweep.study()
    first = study.trials[0]
    assert first.state == TrialState.FAIL
    assert first.values is None and "error" not in first.user_attrs  # nothing written
    # The worker went on asking: the budget is made of the trials after it.
    assert [t.state for t in study.trials[1:]] == [TrialState.COMPLETE] * 2
    output = _output(capfd)
    assert f"Trial 0 finished {result} here, but another worker had failed it as stale" in output
    assert "its result is dropped" in output
    assert "was interrupted" not in output and "Traceback" not in output


def test_a_trial_failed_between_the_check_and_a_write_is_dropped(tmp_path, monkeypatch) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    trial = study.ask(SPACE)
    # The read says RUNNING; another worker fails the trial right after it.
    states = iter([TrialState.RUNNING, TrialState.FAIL])
    monkeypatch.setattr(sweeper_module, "_state", lambda study, number: next(states))
    study.tell(trial.number, state=TrialState.FAIL)
    outcome = Outcome(TrialState.FAIL, error="ToyTaskError: boom")
    assert sweeper_module._record_outcome(study, trial, outcome) is False
    assert "error" not in study.trials[0].user_attrs


# --- several workers --------------------------------------------------------------------


def test_two_worker_processes_share_one_study(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    outputs = run_worker_processes(
        tmp_path,
        "sleep=0.2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=shared",
        "hydra.sweeper.n_trials=8",
    )
    study = optuna.load_study(study_name="shared", storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    # Both ask before either sees the other's trial: the study may end one trial over.
    assert 8 <= len(finished) <= 9
    assert len({t.user_attrs[WORKER_ATTR] for t in study.trials}) == 2  # both ran trials
    assert sum("(created it)" in o for o in outputs) == 1
    assert sum("(joined it)" in o for o in outputs) == 1
    # Heartbeats and retries are experimental in Optuna, chosen on purpose: no warning.
    assert not any("ExperimentalWarning" in o for o in outputs)
    assert all(t.state != TrialState.RUNNING for t in study.trials)


def test_the_joblib_launcher_runs_trials_in_parallel_processes(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    result = subprocess.run(
        [
            sys.executable,
            str(TOY_APP),
            "-m",
            "steps=2",
            "sleep=0.5",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=joblib",
            "hydra.sweeper.n_trials=4",
            f"hydra.sweep.dir={tmp_path}/out",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="joblib", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    # Reported from the worker processes, which reach their trial through the storage.
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)
    # Two at a time: the first two trials ran side by side.
    first, second = study.trials[:2]
    assert second.datetime_start < first.datetime_complete
