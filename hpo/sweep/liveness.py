"""Which trials are alive: Optuna's heartbeats, driven from an ask-and-tell sweeper.

Optuna's RDB storage keeps one heartbeat row per trial and fails RUNNING trials whose
heartbeat is older than the grace period, but only `Study.optimize` drives it. This sweeper
asks and tells itself, so it does what `optimize` does: one thread per worker beats for
every trial the worker runs, and `fail_stale_trials` runs before each `ask`. A worker that
dies (kill -9, a lost host) stops beating; the next worker to ask fails its trial, ends the
trial's MLflow run KILLED and queues the same params again (Optuna's retry callback).

A trial is owned by the worker that asked it: the worker records its name in the user attr
`WORKER_ATTR` at once, so a RUNNING trial without it was left by a version without
heartbeats and is reported (with the command that clears it), never failed on a guess.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from hpo.urls import SecretUrl

log = logging.getLogger(__name__)

# User attrs a trial carries: the worker running it and the MLflow run its job opened.
WORKER_ATTR = "worker"
RUN_ID_ATTR = "mlflow_run_id"


@dataclass(frozen=True)
class Liveness:
    """`hydra.sweeper.heartbeat_interval`, `grace_period` and `max_retry`."""

    heartbeat_interval: int
    grace_period: int
    max_retry: int

    def __post_init__(self) -> None:
        if self.heartbeat_interval < 1:
            raise ValueError(
                f"hydra.sweeper.heartbeat_interval={self.heartbeat_interval} must be >= 1 second"
            )
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(
                f"hydra.sweeper.grace_period={self.grace_period} must exceed heartbeat_interval="
                f"{self.heartbeat_interval}: a live trial would be failed between two beats"
            )
        if self.max_retry < 0:
            raise ValueError(f"hydra.sweeper.max_retry={self.max_retry} must be >= 0")


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials some worker is running: RUNNING and owned (`WORKER_ATTR`).

    The one definition of "running" for the sweeper (what holds the budget, whether to wait
    for other workers) and the report (whether the parent run stays open). An orphan, a
    RUNNING trial without an owner, is left out: no heartbeat can ever clear it, so counting
    it would hold the budget and keep the parent run open for ever (`orphan_trials`).
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in trials if WORKER_ATTR in t.user_attrs]


def orphan_trials(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials no worker owns (left by a version without heartbeats, or made by a
    process outside this sweeper): reported with the command that clears them."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in trials if WORKER_ATTR not in t.user_attrs]


@contextmanager
def chosen_experimental() -> Iterator[None]:
    """Optuna's heartbeats and stale-trial retries are experimental; this project chose them
    on purpose (they bring back a killed worker's trial), so their warnings are not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def worker_name() -> str:
    """This process as `host:pid`: what a trial's `worker` attr and the logs show."""
    return f"{socket.gethostname()}:{os.getpid()}"


def stale_trial_callback(
    liveness: Liveness, on_stale: Callable[[FrozenTrial], None]
) -> Callable[[optuna.Study, FrozenTrial], None]:
    """What happens to a trial whose worker stopped beating: `on_stale` (close its MLflow
    run), then Optuna's retry callback queues its params again, up to `max_retry` times."""
    with chosen_experimental():
        retry = RetryHeartbeatStaleTrialCallback(max_retry=liveness.max_retry)

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        owner = trial.user_attrs.get(WORKER_ATTR, "an unknown worker")
        with chosen_experimental():
            retries = len(RetryHeartbeatStaleTrialCallback.retry_history(trial))
        again = retries < liveness.max_retry
        log.warning(
            "trial %d (run by %s) sent no heartbeat for over %d s: marked FAIL; %s",
            trial.number,
            owner,
            liveness.grace_period,
            "its params are queued to run again"
            if again
            else f"not retried: it ran {retries + 1} times (max_retry={liveness.max_retry})",
        )
        try:
            on_stale(trial)
        finally:
            retry(study, trial)

    return callback


def fail_stale(study: optuna.Study) -> None:
    """Fail the study's trials whose worker is gone (a no-op without heartbeats)."""
    with chosen_experimental():
        fail_stale_trials(study)


def ask(study: optuna.Study, **kwargs: object) -> optuna.Trial:
    """`study.ask`, without Optuna's warning that heartbeats are meant for `optimize`: this
    sweeper beats and fails stale trials itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask(**kwargs)  # type: ignore[arg-type]


def _storage_id(storage: RDBStorage, trial: optuna.Trial) -> int:
    """The storage's key of `trial` (heartbeats are keyed by it), through public API only."""
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)


class Heartbeat:
    """One thread that beats for every trial this worker runs, every `interval` seconds."""

    def __init__(self, storage: RDBStorage, interval: int) -> None:
        self.storage, self.interval = storage, interval
        self._trials: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    @contextmanager
    def beating(self, trial: optuna.Trial) -> Iterator[None]:
        """Beat for `trial` (the first beat now) until the block ends."""
        trial_id = _storage_id(self.storage, trial)
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self._trials.add(trial_id)
        try:
            yield
        finally:
            with self._lock:
                self._trials.discard(trial_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                trial_ids = sorted(self._trials)
            for trial_id in trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # a storage hiccup: the next beat may get through
                    log.warning("heartbeat for trial id %d not recorded: %s", trial_id, exc)


def warn_unowned_running(study: optuna.Study, storage_url: SecretUrl | None) -> None:
    """Report RUNNING trials no heartbeat can ever clear (left by a version without them)."""
    for trial in orphan_trials(study):
        log.warning(
            "trial %d of study %r is RUNNING but has no heartbeat (left by an older version or "
            "a process outside this sweeper); it holds no budget and no worker waits for it. If no "
            "process runs it, clear it with: optuna tell --storage '%s' --study-name '%s' "
            "--trial-number %d --state fail --skip-if-finished",
            trial.number,
            study.study_name,
            storage_url or "memory",
            study.study_name,
            trial.number,
        )
