"""`hydra.sweeper.deadline`: expected run lengths, and a toy sweep that stops in time."""

from __future__ import annotations

import datetime as dt

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial
from toy_app.harness import ToySweep

from hpo.sweep.deadline import expected_seconds, fits

START = dt.datetime(2026, 12, 7, 12, 0, 0)


def _run(
    seconds: float, budget: float | None, state: TrialState = TrialState.COMPLETE
) -> FrozenTrial:
    trial = create_trial(
        params={"x": 0.0},
        distributions={"x": FloatDistribution(-1, 1)},
        value=0.0 if state == TrialState.COMPLETE else None,
        state=state,
        user_attrs={} if budget is None else {"budget": budget},
    )
    trial.datetime_start = START
    trial.datetime_complete = START + dt.timedelta(seconds=seconds)
    return trial


def _budget(trial: FrozenTrial) -> float | None:
    return trial.user_attrs.get("budget")


def test_the_mean_of_runs_at_the_same_budget_is_expected() -> None:
    runs = [_run(100, 3), _run(140, 3, TrialState.PRUNED), _run(300, 9)]
    assert expected_seconds(runs, 3, _budget) == pytest.approx(120)
    assert expected_seconds(runs, 9, _budget) == pytest.approx(300)


def test_a_budget_not_run_yet_is_scaled_from_the_others() -> None:
    # 100 s for 3 units and 300 s for 9 units: about 33.3 s a unit.
    runs = [_run(100, 3), _run(300, 9)]
    assert expected_seconds(runs, 27, _budget) == pytest.approx(900)


def test_nothing_known_means_no_estimate() -> None:
    assert expected_seconds([], 3, _budget) is None
    failed = _run(50, 3, TrialState.FAIL)
    assert expected_seconds([failed], 3, _budget) is None


def test_without_fidelity_pruned_runs_say_nothing_of_a_whole_run() -> None:
    runs = [_run(100, None), _run(10, None, TrialState.PRUNED)]
    assert expected_seconds(runs, None, _budget) == pytest.approx(100)


@pytest.mark.parametrize(
    ("expected", "elapsed", "deadline", "result"),
    [
        (100.0, 0.0, 100.0, True),
        (100.0, 1.0, 100.0, False),
        (None, 1e6, 100.0, True),  # no estimate yet: the run starts
        (1e6, 1e6, None, True),  # no deadline
    ],
)
def test_fits(expected, elapsed, deadline, result) -> None:
    assert fits(expected, elapsed, deadline) is result


def test_a_sweep_starts_no_run_that_would_end_after_the_deadline(
    toy_sweep: ToySweep, capfd
) -> None:
    # Each run takes over a second; after the first, a second one cannot end by 1.5 s.
    assert toy_sweep.run("sleep=1.0", "hydra.sweeper.deadline=1.5", n_trials=5) == 0
    assert toy_sweep.states() == [TrialState.COMPLETE]
    out, err = capfd.readouterr()
    assert "deadline of 1.5 s: a trial takes about 1 s and 0 s are left; no new runs" in out + err
