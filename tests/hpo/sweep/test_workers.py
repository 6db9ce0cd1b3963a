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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState
from ports import free_port

from hpo.tracking.runs import tracking_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]
TINY = (
    "data=synthetic",
    "trainer.epochs=2",
    "model.width=8",
    "model.depth=2",
    "trainer.batch_size=64",
    "trainer.num_threads=1",
    "trainer.progress=false",
    "hydra.sweeper.params={model.dropout: 'interval(0.0, 0.5)', "
    "optimizer.lr: 'tag(log, interval(1e-3, 1e-2))'}",
    # A lost trial is stale after 5 s (a margin for beats delayed on a busy 2-core machine).
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=5",
)
STUDY = "workers-study"


@dataclass
class StudyView:
    """The study's trials as read at one moment."""

    trials: list[FrozenTrial]

    def get_trials(self, states: Sequence[TrialState]) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state in states]


class Workers:
    """Starts sweep processes on one study; reads back the study and its MLflow runs."""

    def __init__(
        self,
        tmp: Path,
        storage: str,
        tracking: str,
        env: Mapping[str, str] | None = None,
        study: str = STUDY,
    ) -> None:
        self.tmp, self.storage, self.tracking, self.study_name = tmp, storage, tracking, study
        self.client_env = dict(env or {})
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.client_env}
        self.logs: list[Path] = []

    def start(self, n_trials: int, *extra: str) -> subprocess.Popen[bytes]:
        index = len(self.logs)
        log = self.tmp / f"worker-{index}.log"
        self.logs.append(log)
        command = [
            sys.executable,
            "train.py",
            "-m",
            "hydra/sweeper=optuna",
            *TINY,
            f"hydra.sweeper.storage={self.storage}",
            f"hydra.sweeper.study_name={self.study_name}",
            f"hydra.sweeper.n_trials={n_trials}",
            f"tracking.uri={self.tracking}",
            f"hydra.sweep.dir={self.tmp}/multirun-{index}",
            *extra,
        ]
        with log.open("wb") as out:
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait(self, processes: Sequence[subprocess.Popen[bytes]], timeout: float = 300) -> None:
        for process in processes:
            code = process.wait(timeout=timeout)
            assert code == 0, f"worker exited {code}:\n{self.output()}"

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.logs)

    @contextmanager
    def credentials(self) -> Iterator[None]:
        """The workers' credentials (PGPASSFILE, MLflow login) in this process's env."""
        saved = dict(os.environ)
        os.environ.update(self.client_env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def study(self) -> StudyView:
        with self.credentials():
            storage = optuna.storages.RDBStorage(self.storage)
            try:
                study = optuna.load_study(study_name=self.study_name, storage=storage)
                return StudyView(study.get_trials())
            finally:
                storage.engine.dispose()  # no pooled connection outlives the read

    def runs(self) -> tuple[MlflowClient, list]:
        """A client (use it inside `credentials()`) and the study's runs."""
        with self.credentials():
            client = tracking_client(self.tracking)
            experiment = client.get_experiment_by_name("fashion-mnist")
            runs = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.study_name = '{self.study_name}'",
                max_results=1000,
            )
        return client, runs


def assert_study_complete(workers: Workers, n_trials: int, n_workers: int) -> None:
    """n_trials finished (at most workers-1 over), one parent run, one child run per trial."""
    study = workers.study()
    states = [t.state for t in study.trials]
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert n_trials <= len(finished) <= n_trials + n_workers - 1, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states
    _, runs = workers.runs()
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "study"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    numbers = sorted(int(r.data.tags["trial_number"]) for r in children)
    assert numbers == sorted(t.number for t in study.trials if t.user_attrs.get("mlflow_run_id"))
    assert len(numbers) == len(set(numbers)), "a trial has two runs"
    by_id = {r.info.run_id: r for r in children}
    for trial in finished:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["trial_state"] == trial.state.name
        assert run.info.status == "FINISHED"


def kill_mid_trial(
    workers: Workers, worker: subprocess.Popen[bytes], timeout: float = 240
) -> FrozenTrial:
    """SIGKILL `worker` once one of its trials runs with its MLflow run open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"worker ended before the kill:\n{workers.output()}"
        try:
            running = workers.study().get_trials(states=(TrialState.RUNNING,))
        except Exception:  # the study or its tables do not exist yet
            running = []
        mine = [t for t in running if t.user_attrs.get("worker", "").endswith(f":{worker.pid}")]
        if mine and "mlflow_run_id" in mine[0].user_attrs:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
            return mine[0]
        time.sleep(0.2)
    raise AssertionError(f"no trial of worker {worker.pid} started:\n{workers.output()}")


def assert_retried_after_kill(workers: Workers, lost: FrozenTrial) -> None:
    study = workers.study()
    assert study.trials[lost.number].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1, [(t.number, t.state) for t in study.trials]
    assert retries[0].params == lost.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    _, runs = workers.runs()
    by_id = {r.info.run_id: r for r in runs}
    killed = by_id[lost.user_attrs["mlflow_run_id"]]
    assert killed.info.status == "KILLED"
    assert killed.data.tags["retried_as_trial"] == str(retries[0].number)
    retry_run = by_id[retries[0].user_attrs["mlflow_run_id"]]
    assert retry_run.data.tags["retry_of_run_id"] == killed.info.run_id


@pytest.fixture
def sqlite_workers(tmp_path: Path) -> Workers:
    return Workers(tmp_path, f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db")


def test_two_workers_on_sqlite_share_one_study(sqlite_workers: Workers) -> None:
    # Started together on a new database: one creates the study, tables and parent run.
    first, second = sqlite_workers.start(6), sqlite_workers.start(6)
    sqlite_workers.wait([first, second])
    assert_study_complete(sqlite_workers, n_trials=6, n_workers=2)
    owners = {t.user_attrs["worker"] for t in sqlite_workers.study().trials}
    assert len(owners) == 2, f"one worker ran every trial:\n{sqlite_workers.output()}"
    output = sqlite_workers.output()
    assert "Traceback" not in output and "database is locked" not in output
    assert output.count("(created it)") == 1 and output.count("(joined it)") == 1


def test_killed_worker_trial_is_retried_by_a_rerun_on_sqlite(sqlite_workers: Workers) -> None:
    worker = sqlite_workers.start(3, "trainer.epochs=6")
    lost = kill_mid_trial(sqlite_workers, worker)
    # The same command again: the lost trial counts as running while its heartbeat is
    # fresh, then goes stale; the rerun fails it, ends its run KILLED and runs its params.
    sqlite_workers.wait([sqlite_workers.start(3)])
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
    workers = Workers(tmp_path, f"sqlite:///{tmp_path}/optuna.db", url, env)
    worker = workers.start(3, "trainer.epochs=30", "hydra.sweeper.max_failure_rate=0.0")
    try:
        deadline = time.monotonic() + 240
        while not _trial_has_run(workers) and time.monotonic() < deadline:
            assert worker.poll() is None, workers.output()
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    assert worker.wait(timeout=300) == 1, workers.output()
    output = workers.output()
    study = workers.study()
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert f"127.0.0.1:{port}" in study.trials[0].user_attrs["error"]
    assert "more than max_failure_rate=0.0; the sweep stopped" in output
    assert "trial 0: " in output
    assert "could not record the study on its MLflow parent run" in output


def _trial_has_run(workers: Workers) -> bool:
    try:
        return any("mlflow_run_id" in t.user_attrs for t in workers.study().trials)
    except Exception:  # the study does not exist yet
        return False


def test_submitit_local_launcher_runs_trials_in_their_own_processes(
    sqlite_workers: Workers,
) -> None:
    # What README's SLURM section runs, with the local executor: each trial a submitit job
    # in a process of its own, beating through the sweep process, reporting per epoch.
    sqlite_workers.wait(
        [sqlite_workers.start(2, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")]
    )
    assert_study_complete(sqlite_workers, n_trials=2, n_workers=1)
    study = sqlite_workers.study()
    assert all(sorted(t.intermediate_values) == [1, 2] for t in study.trials)
    folder = sqlite_workers.tmp / "multirun-0" / ".submitit"
    jobs = [p for p in folder.iterdir() if p.name.isdigit()]  # named by job id (a pid here)
    assert len(jobs) == 2, list(folder.iterdir())  # one submitit job per trial
    assert "Submitit 'local' sweep output dir" in sqlite_workers.output()
