"""Sweep processes (workers) on one Optuna study: start them, wait for them, read the study.

The one harness of the worker benchmarks (`bench/workers.py`, `bench/scale.py`) and the
worker tests (`tests/hpo/sweep/test_workers*.py`). A worker is the real command line,
`python <app> -m hydra/sweeper=optuna` with the study's storage, name and budget and its own
`hydra.sweep.dir`, run from the project root with its output in a log file of its own. The
app is the training app (`TRAIN_APP`, which records to MLflow at `Stores.mlflow`) or the
toy task (`TOY_APP`: no torch, no data, no MLflow; see tests/toy_app/app.py).

Importable both as `bench.study_workers` (tests run with the project root on sys.path) and
as `study_workers` (benchmarks run as `python bench/<script>.py`), which is why it imports no
bench sibling. It never imports mlflow (tests/hpo/test_layout.py): MLflow reads stay with
the tests that make them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import optuna
from optuna.trial import FrozenTrial

from hpo.paths import PROJECT_ROOT
from hpo.services import ServiceInfo, start, stop

log = logging.getLogger("bench.study_workers")

TRAIN_APP = PROJECT_ROOT / "train.py"
TOY_APP = PROJECT_ROOT / "tests" / "toy_app" / "app.py"
# Seconds a terminated worker gets to unwind (fail its trials, end its runs) before a kill.
TERMINATE_GRACE_S = 30


@dataclass(frozen=True)
class Stores:
    """Where workers record, and what a client needs in its environment to reach it.

    Attributes:
        optuna: the study storage URL (`hydra.sweeper.storage`).
        mlflow: the training app's `tracking.uri`; None for an app without MLflow.
        env: PGPASSFILE and the MLflow login, for the workers and for readers of the study.
    """

    optuna: str
    mlflow: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def sqlite(cls, folder: Path, mlflow: bool = True) -> Stores:
        """Fresh SQLite files in `folder` (absolute paths: four slashes)."""
        folder = folder.resolve()
        tracking = f"sqlite:///{folder / 'mlflow.db'}" if mlflow else None
        return cls(f"sqlite:///{folder / 'optuna.db'}", tracking)

    @classmethod
    def of_services(cls, info: ServiceInfo, mlflow: bool = True) -> Stores:
        """The PostgreSQL study storage (and the MLflow server) of `hpo.services.start`."""
        return cls(info.storage_url, info.tracking_url if mlflow else None, dict(info.env))


class StudyWorkers:
    """Sweep processes started on one study, each with its log; ended when the block ends.

    Args:
        folder: where the logs (`worker-<i>.log`) and sweep folders (`multirun-<i>`) go.
        stores: the study storage (and MLflow) every worker uses.
        study_name: `hydra.sweeper.study_name`.
        app: the Hydra app to sweep (`TRAIN_APP` or `TOY_APP`).
        overrides: Hydra overrides every worker gets, before its own.
    """

    def __init__(
        self,
        folder: Path,
        stores: Stores,
        study_name: str,
        app: Path = TRAIN_APP,
        overrides: Sequence[str] = (),
    ) -> None:
        self.folder, self.stores, self.study_name, self.app = folder, stores, study_name, app
        self.overrides = list(overrides)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        # time.time() at each start: the clock of the workers' log lines and trial dates.
        self.started_at: list[float] = []

    def __enter__(self) -> StudyWorkers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end()

    def command(self, n_trials: int, sweep_dir: Path, extra: Sequence[str] = ()) -> list[str]:
        """The command line of one worker with a study budget of `n_trials`."""
        overrides = [
            "hydra/sweeper=optuna",
            f"hydra.sweeper.storage={self.stores.optuna}",
            f"hydra.sweeper.study_name={self.study_name}",
            f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweep.dir={sweep_dir}",
        ]
        if self.stores.mlflow is not None:
            overrides.append(f"tracking.uri={self.stores.mlflow}")
        return [sys.executable, str(self.app), "-m", *overrides, *self.overrides, *extra]

    def start(self, n_trials: int, *extra: str) -> subprocess.Popen[bytes]:
        """Start one more worker; `extra` overrides come last (they win)."""
        index = len(self.processes)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"worker-{index}.log"
        command = self.command(n_trials, self.folder / f"multirun-{index}", extra)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.stores.env}
        with path.open("wb") as out:
            self.started_at.append(time.time())
            process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        self.logs.append(path)
        return process

    def wait(
        self,
        processes: Sequence[subprocess.Popen[bytes]] | None = None,
        timeout: float | None = None,
    ) -> list[int]:
        """Exit codes of `processes` (default: all started), waiting at most `timeout` s
        in all; `subprocess.TimeoutExpired` when one still runs then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        codes = []
        for process in self.processes if processes is None else processes:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            codes.append(process.wait(timeout=left))
        return codes

    def end(self) -> None:
        """Terminate (then kill) the workers still running: after an error or an interrupt."""
        for process in self.processes:
            if process.poll() is None:
                log.warning("terminating worker %d", process.pid)
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=TERMINATE_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def output(self) -> str:
        """Every worker's log, each under a header naming it."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in self.logs)

    def tail(self, index: int, chars: int = 3000) -> str:
        """The end of worker `index`'s log."""
        return self.logs[index].read_text(errors="replace")[-chars:]

    @contextmanager
    def credentials(self) -> Iterator[None]:
        """The workers' client environment (PGPASSFILE, MLflow login) in this process."""
        with client_env(self.stores.env):
            yield

    def trials(self) -> list[FrozenTrial] | None:
        """The study's trials as stored now, or None when no worker has created it yet."""
        with self.credentials():
            storage = optuna.storages.RDBStorage(self.stores.optuna)
            try:
                return optuna.load_study(study_name=self.study_name, storage=storage).get_trials()
            except KeyError:
                return None
            finally:
                storage.engine.dispose()  # no pooled connection outlives the read


@contextmanager
def client_env(env: Mapping[str, str]) -> Iterator[None]:
    """`env` in this process's environment for the block, then the values before it."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def local_services(prefix: str, auth: bool = False) -> Iterator[ServiceInfo]:
    """PostgreSQL + an MLflow server (`hpo.services.start`) in a temporary folder on free
    ports; stopped and removed when the block ends, however it ends."""
    # Under /tmp: as root, PostgreSQL runs as `postgres`, which must reach the folder
    # (pytest's tmp_path is 0700).
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        pg_port, mlflow_port = free_ports(2)
        log.info("starting PostgreSQL (:%d) and MLflow (:%d) in %s", pg_port, mlflow_port, folder)
        yield start(folder, "127.0.0.1", pg_port, mlflow_port, auth=auth)
    finally:
        try:
            log.info("stopped %s", ", ".join(stop(folder)) or "nothing")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (all held open while choosing)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks end workers and stop services."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
