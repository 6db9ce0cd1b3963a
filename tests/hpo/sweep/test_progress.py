"""Reading a finished Hydra job into what Optuna is told."""

from __future__ import annotations

import math

import pytest
from hydra.core.utils import JobReturn, JobStatus
from optuna import TrialPruned
from optuna.trial import TrialState

from hpo.sweep.progress import SweepProgress, describe, job_outcome


def _completed(value: object) -> JobReturn:
    result = JobReturn()
    result.status = JobStatus.COMPLETED
    result.return_value = value
    return result


def _failed(exc: BaseException) -> JobReturn:
    result = JobReturn()
    result.status = JobStatus.FAILED
    result.return_value = exc
    return result


@pytest.mark.parametrize(
    ("value", "objectives", "state", "values"),
    [
        (0.91, 1, TrialState.COMPLETE, 0.91),
        ([0.9, 1000], 2, TrialState.COMPLETE, [0.9, 1000.0]),
        ((0.9, 1000), 2, TrialState.COMPLETE, [0.9, 1000.0]),
        (0.9, 2, TrialState.FAIL, None),
        ("high", 1, TrialState.FAIL, None),
        (math.nan, 1, TrialState.FAIL, None),
        (None, 1, TrialState.FAIL, None),
    ],
)
def test_completed_jobs(value, objectives, state, values) -> None:
    outcome = job_outcome(_completed(value), objectives)
    assert outcome.state == state and outcome.values == values
    assert (outcome.error is None) == (state == TrialState.COMPLETE)


def test_a_pruned_job_is_pruned_and_prints_nothing(capfd) -> None:
    outcome = job_outcome(_failed(TrialPruned("pruned at epoch 2")), 1)
    assert outcome.state == TrialState.PRUNED and outcome.error is None
    assert capfd.readouterr().err == ""


def test_a_failed_job_carries_its_error() -> None:
    outcome = job_outcome(_failed(ValueError("lr must be > 0")), 1)
    assert outcome.state == TrialState.FAIL
    assert outcome.error == "ValueError: lr must be > 0"
    assert describe(outcome) == "ValueError: lr must be > 0"


def test_progress_counts_states() -> None:
    progress = SweepProgress()
    progress.told.update({0: TrialState.COMPLETE, 1: TrialState.PRUNED, 2: TrialState.COMPLETE})
    assert progress.count(TrialState.COMPLETE) == 2 and progress.count(TrialState.FAIL) == 0
    assert progress.seconds() >= 0


def test_failures_in_a_row_count_back_to_the_last_other_state() -> None:
    progress = SweepProgress()
    assert progress.failures_in_a_row() == 0
    for number, state in enumerate(
        [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]
    ):
        progress.told[number] = state
    assert progress.failures_in_a_row() == 0
    progress.told[4] = TrialState.FAIL
    progress.told[5] = TrialState.FAIL
    assert progress.failures_in_a_row() == 2
