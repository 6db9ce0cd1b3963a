"""Which trials are alive: heartbeats, stale trials failed and retried, orphans reported."""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hpo.sweep import liveness
from hpo.sweep.liveness import WORKER_ATTR, Heartbeat, Liveness

SPACE = {"x": FloatDistribution(0.0, 1.0)}


@pytest.mark.parametrize(
    ("interval", "grace", "retries", "message"),
    [
        (0, 10, 1, "heartbeat_interval=0 must be >= 1 second"),
        (5, 5, 1, "grace_period=5 must exceed heartbeat_interval=5"),
        (5, 4, 1, "grace_period=4 must exceed heartbeat_interval=5"),
        (5, 20, -1, "max_retry=-1 must be >= 0"),
    ],
)
def test_liveness_settings_are_checked(interval, grace, retries, message) -> None:
    with pytest.raises(ValueError, match=message):
        Liveness(interval, grace, retries)


def test_worker_name_is_host_and_pid() -> None:
    assert liveness.worker_name() == f"{socket.gethostname()}:{os.getpid()}"


def test_ask_does_not_warn_that_heartbeats_are_meant_for_optimize(tmp_path: Path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=1)
    study = optuna.create_study(storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trial = liveness.ask(study, fixed_distributions=SPACE)
    assert 0.0 <= trial.params["x"] <= 1.0


def _stale_study(tmp_path: Path, on_stale, max_retry: int = 1) -> tuple[optuna.Study, RDBStorage]:
    # grace_period 2 s in the storage: SQLite's clock has whole seconds, so a trial is
    # stale 3 s after its last beat at the latest.
    callback = liveness.stale_trial_callback(Liveness(1, 2, max_retry), on_stale)
    storage = RDBStorage(
        f"sqlite:///{tmp_path}/optuna.db",
        heartbeat_interval=1,
        grace_period=2,
        heartbeat_stale_trial_callback=callback,
    )
    return optuna.create_study(study_name="alive", storage=storage), storage


def test_a_silent_trial_is_failed_closed_and_retried_a_beating_one_is_not(
    tmp_path: Path, caplog
) -> None:
    lost: list[FrozenTrial] = []
    study, storage = _stale_study(tmp_path, lost.append)
    heartbeat = Heartbeat(storage, interval=1)
    try:
        silent = liveness.ask(study, fixed_distributions=SPACE)
        silent.set_user_attr(WORKER_ATTR, "gone-host:1")
        busy = liveness.ask(study, fixed_distributions=SPACE)
        with heartbeat.beating(silent):
            pass  # one beat, then silence: the worker died
        with heartbeat.beating(busy), caplog.at_level(logging.WARNING, liveness.__name__):
            deadline = time.monotonic() + 8
            while not lost and time.monotonic() < deadline:
                time.sleep(0.25)
                liveness.fail_stale(study)
            states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    finally:
        heartbeat.stop()
    assert [t.number for t in lost] == [silent.number]  # on_stale saw the silent one only
    assert states[silent.number] == TrialState.FAIL
    assert states[busy.number] == TrialState.RUNNING  # its beats kept it alive
    assert "trial 0 (run by gone-host:1) sent no heartbeat for over 2 s" in caplog.text
    assert "its params are queued to run again" in caplog.text
    retry = liveness.ask(study, fixed_distributions=SPACE)
    assert retry.params == silent.params
    frozen = study.get_trials(deepcopy=False)[retry.number]
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen) == silent.number


@pytest.mark.parametrize(("max_retry", "retried"), [(0, False), (1, True)])
def test_a_stale_trial_is_retried_up_to_max_retry(max_retry, retried, caplog) -> None:
    closed: list[int] = []
    callback = liveness.stale_trial_callback(
        Liveness(1, 2, max_retry), lambda t: closed.append(t.number)
    )
    study = optuna.create_study()
    trial = study.ask(SPACE)
    study.tell(trial, state=TrialState.FAIL)  # what fail_stale does before the callback
    with caplog.at_level(logging.WARNING, liveness.__name__):
        callback(study, study.trials[trial.number])
    assert closed == [trial.number]
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert len(waiting) == int(retried)
    if not retried:
        assert "not retried: it ran 1 times (max_retry=0)" in caplog.text


def test_the_retry_callback_runs_even_when_closing_the_run_fails() -> None:
    def broken(trial: FrozenTrial) -> None:
        raise RuntimeError("tracking server gone")

    callback = liveness.stale_trial_callback(Liveness(1, 2, 1), broken)
    study = optuna.create_study()
    trial = study.ask(SPACE)
    study.tell(trial, state=TrialState.FAIL)
    with pytest.raises(RuntimeError, match="tracking server gone"):
        callback(study, study.trials[trial.number])
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 1


def test_heartbeat_beats_for_each_trial_it_runs_until_its_block_ends(tmp_path: Path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=1)
    study = optuna.create_study(study_name="beats", storage=storage)
    first, second = (liveness.ask(study, fixed_distributions=SPACE) for _ in range(2))
    study_id = storage.get_study_id_from_name("beats")
    ids = {
        t.number: storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        for t in (first, second)
    }
    beats: list[int] = []
    real = storage.record_heartbeat

    def record(trial_id: int) -> None:
        beats.append(trial_id)
        real(trial_id)

    storage.record_heartbeat = record  # type: ignore[method-assign]
    # A fifth of a second between beats (sweeps use whole seconds): the test takes one.
    heartbeat = Heartbeat(storage, interval=0.2)  # type: ignore[arg-type]
    try:
        with heartbeat.beating(second):
            assert beats == [ids[second.number]]  # the first beat at once, for its own id
            time.sleep(0.5)
        assert beats.count(ids[second.number]) >= 2  # and again each interval
        beats.clear()
        time.sleep(0.5)
        assert beats == []  # its block ended: no more beats
    finally:
        heartbeat.stop()
    assert ids[first.number] not in beats


def test_an_orphan_is_reported_with_the_command_that_clears_it(tmp_path: Path, caplog) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="orphans", storage=url)
    orphan = study.ask(SPACE)  # RUNNING, and no worker attr: no heartbeat can clear it
    owned = study.ask(SPACE)
    owned.set_user_attr(WORKER_ATTR, "host:1")
    with caplog.at_level(logging.WARNING, liveness.__name__):
        liveness.warn_unowned_running(study, url)
    assert f"trial {orphan.number} of study 'orphans' is RUNNING but has no heartbeat" in (
        caplog.text
    )
    assert (
        f"optuna tell --storage '{url}' --study-name 'orphans' --trial-number {orphan.number} "
        "--state fail --skip-if-finished" in caplog.text
    )
    assert f"trial {owned.number} of" not in caplog.text
