"""Several sweep processes on one study, and workers killed with SIGKILL mid-trial.

Real processes (`python train.py -m hydra/sweeper=optuna`), real stores: SQLite here, and
PostgreSQL with an MLflow server in `test_workers_services.py`. Marked slow: each worker
process imports torch and MLflow (seconds), and a lost trial is noticed after the grace
period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from mlflow.entities import Run
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from ports import free_port

from bench.study_workers import Stores, StudyWorkers
from hpo.tracking.runs import tracking_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TINY = (
    "debug=tiny",  # synthetic data, 2 epochs, batch 64, an 8-wide CNN, no progress bar
    "trainer.num_threads=1",  # two workers share the 2 cores
    # A space that keeps every trial tiny: the default one samples the CNN's width and depth
    # and the batch size (undoing debug=tiny), the quick one only learning rate and weight
    # decay; its learning rates are for SGD, these for the default AdamW.
    "hydra/sweeper/params=quick",
    "hydra.sweeper.params={optimizer.lr: 'tag(log, interval(1e-3, 1e-2))'}",
    # A lost trial is stale after 5 s (a margin for beats delayed on a busy 2-core machine).
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=5",
)
STUDY = "workers-study"


def tiny_workers(folder: Path, stores: Stores, study: str = STUDY) -> StudyWorkers:
    """Workers of the training app on tiny runs, their logs and sweep folders in `folder`."""
    return StudyWorkers(folder, stores, study, overrides=TINY)


def trials(workers: StudyWorkers, *states: TrialState) -> list[FrozenTrial]:
    """The study's trials (in `states`, if given); none before a worker created the study."""
    found = workers.trials() or []
    return [t for t in found if not states or t.state in states]


def wait_ok(
    workers: StudyWorkers, processes: Sequence[subprocess.Popen[bytes]], timeout: float = 300
) -> None:
    codes = workers.wait(processes, timeout=timeout)
    assert codes == [0] * len(processes), f"workers exited {codes}:\n{workers.output()}"


def study_runs(workers: StudyWorkers) -> list[Run]:
    """The MLflow runs tagged with the workers' study (parent and children)."""
    assert workers.stores.mlflow is not None
    with workers.credentials():
        client = tracking_client(workers.stores.mlflow)
        experiment = client.get_experiment_by_name("fashion-mnist")
        assert experiment is not None
        return client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.study_name = '{workers.study_name}'",
            max_results=1000,
        )


def assert_study_complete(workers: StudyWorkers, n_trials: int, n_workers: int) -> None:
    """n_trials finished (at most workers-1 over), one parent run, one child run per trial."""
    every = trials(workers)
    states = [t.state for t in every]
    finished = [t for t in every if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert n_trials <= len(finished) <= n_trials + n_workers - 1, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    runs = study_runs(workers)
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "study"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    numbers = sorted(int(r.data.tags["trial_number"]) for r in children)
    assert numbers == sorted(t.number for t in every if t.user_attrs.get("mlflow_run_id"))
    assert len(numbers) == len(set(numbers)), "a trial has two runs"
    by_id = {r.info.run_id: r for r in children}
    for trial in finished:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["trial_state"] == trial.state.name
        assert run.info.status == "FINISHED"


def kill_mid_trial(
    workers: StudyWorkers, worker: subprocess.Popen[bytes], timeout: float = 240
) -> FrozenTrial:
    """SIGKILL `worker` once one of its trials runs with its MLflow run open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"worker ended before the kill:\n{workers.output()}"
        try:
            running = trials(workers, TrialState.RUNNING)
        except Exception:  # the tables do not exist yet, or a worker is creating them
            running = []
        mine = [t for t in running if t.user_attrs.get("worker", "").endswith(f":{worker.pid}")]
        if mine and "mlflow_run_id" in mine[0].user_attrs:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            return mine[0]
        time.sleep(0.2)
    raise AssertionError(f"no trial of worker {worker.pid} started:\n{workers.output()}")


def assert_retried_after_kill(workers: StudyWorkers, lost: FrozenTrial) -> None:
    every = trials(workers)
    assert every[lost.number].state == TrialState.FAIL
    retries = [
        t for t in every if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == lost.number
    ]
    assert len(retries) == 1, [(t.number, t.state) for t in every]
    assert retries[0].params == lost.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    by_id = {r.info.run_id: r for r in study_runs(workers)}
    killed = by_id[lost.user_attrs["mlflow_run_id"]]
    assert killed.info.status == "KILLED"
    assert killed.data.tags["retried_as_trial"] == str(retries[0].number)
    retry_run = by_id[retries[0].user_attrs["mlflow_run_id"]]
    assert retry_run.data.tags["retry_of_run_id"] == killed.info.run_id


@pytest.fixture
def sqlite_workers(tmp_path: Path) -> Iterator[StudyWorkers]:
    with tiny_workers(tmp_path, Stores.sqlite(tmp_path)) as workers:
        yield workers  # the block's end ends any worker a failed test left running


def test_two_workers_on_sqlite_share_one_study(sqlite_workers: StudyWorkers) -> None:
    # Started together on a new database: one creates the study, tables and parent run.
    first, second = sqlite_workers.start(6), sqlite_workers.start(6)
    wait_ok(sqlite_workers, [first, second])
    assert_study_complete(sqlite_workers, n_trials=6, n_workers=2)
    owners = {t.user_attrs["worker"] for t in trials(sqlite_workers)}
    assert len(owners) == 2, f"one worker ran every trial:\n{sqlite_workers.output()}"
    output = sqlite_workers.output()
    assert "Traceback" not in output and "database is locked" not in output
    assert output.count("(created it)") == 1 and output.count("(joined it)") == 1


def test_killed_worker_trial_is_retried_by_a_rerun_on_sqlite(
    sqlite_workers: StudyWorkers,
) -> None:
    worker = sqlite_workers.start(3, "trainer.epochs=6")
    lost = kill_mid_trial(sqlite_workers, worker)
    # The same command again: the lost trial counts as running while its heartbeat is
    # fresh, then goes stale; the rerun fails it, ends its run KILLED and runs its params.
    wait_ok(sqlite_workers, [sqlite_workers.start(3)])
    assert_retried_after_kill(sqlite_workers, lost)
    assert_study_complete(sqlite_workers, n_trials=3, n_workers=1)


def _start_tracking_server(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    mlflow = Path(sys.executable).parent / "mlflow"
    with (tmp / "server.log").open("wb") as log:
        server = _popen_server(mlflow, tmp, port, log)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError((tmp / "server.log").read_text())


def _popen_server(mlflow: Path, tmp: Path, port: int, log: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp}/server.db",
            "--artifacts-destination",
            str(tmp / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_tracking_server_lost_mid_search_fails_the_trial_with_its_url(tmp_path: Path) -> None:
    port = free_port()
    server = _start_tracking_server(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    # MLflow retries a lost server for minutes by default; the message is the same sooner.
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    stores = Stores(Stores.sqlite(tmp_path).optuna, url, env)
    with tiny_workers(tmp_path, stores) as workers:
        worker = workers.start(3, "trainer.epochs=30", "hydra.sweeper.max_failure_rate=0.0")
        _lose_server_mid_trial(workers, worker, server)
        assert worker.wait(timeout=300) == 1, workers.output()
    output = workers.output()
    every = trials(workers)
    assert [t.state for t in every] == [TrialState.FAIL]
    assert f"127.0.0.1:{port}" in every[0].user_attrs["error"]
    assert "more than max_failure_rate=0.0; the sweep stopped" in output
    assert "trial 0: " in output
    assert "could not record the study on its MLflow parent run" in output


def _lose_server_mid_trial(
    workers: StudyWorkers, worker: subprocess.Popen[bytes], server: subprocess.Popen[bytes]
) -> None:
    """Kill the tracking server once a trial has opened its MLflow run."""
    try:
        deadline = time.monotonic() + 240
        while not _trial_has_run(workers) and time.monotonic() < deadline:
            assert worker.poll() is None, workers.output()
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _trial_has_run(workers: StudyWorkers) -> bool:
    try:
        return any("mlflow_run_id" in t.user_attrs for t in trials(workers))
    except Exception:  # the tables do not exist yet, or a worker is creating them
        return False


def test_submitit_local_launcher_runs_trials_in_their_own_processes(
    sqlite_workers: StudyWorkers,
) -> None:
    # What docs/several-machines.md's SLURM part runs, with the local executor: each trial a
    # submitit job in a process of its own, beating through the sweep process, reporting per
    # epoch.
    worker = sqlite_workers.start(
        2, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"
    )
    wait_ok(sqlite_workers, [worker])
    assert_study_complete(sqlite_workers, n_trials=2, n_workers=1)
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials(sqlite_workers))
    folder = sqlite_workers.folder / "multirun-0" / ".submitit"
    jobs = [p for p in folder.iterdir() if p.name.isdigit()]  # named by job id (a pid here)
    assert len(jobs) == 2, list(folder.iterdir())  # one submitit job per trial
    assert "Submitit 'local' sweep output dir" in sqlite_workers.output()
