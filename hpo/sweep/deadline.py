"""`hydra.sweeper.deadline`: start a run only if it is expected to end before the deadline.

`timeout` is a last-start time: a run that starts just before it may take as long as any
run, so a search sized by it leaves up to one run's time idle at its end. A deadline asks
instead how long the next run will take: the mean duration of the study's finished runs at
the same budget, else a first estimate scaled from runs at other budgets (seconds per unit
of budget), else nothing known (the first runs always start). With multi-fidelity, when the
next promotion does not fit, a run at a lower budget may, so low budgets fill the end.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from optuna.trial import FrozenTrial, TrialState

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def expected_seconds(
    trials: Sequence[FrozenTrial],
    budget: float | None,
    budget_of: Callable[[FrozenTrial], float | None],
) -> float | None:
    """How long a run at `budget` is expected to take, or None when nothing is known.

    Only runs that finished their budget count (complete, or pruned with a budget: a run
    stopped by a pruner ended early and says nothing of a whole run's length). Without
    multi-fidelity `budget` is None and every complete run is of the same kind.
    """
    durations: dict[float | None, list[float]] = {}
    for trial in trials:
        if trial.state not in _FINISHED or trial.duration is None:
            continue
        run_budget = budget_of(trial)
        if trial.state == TrialState.PRUNED and run_budget is None:
            continue
        durations.setdefault(run_budget, []).append(trial.duration.total_seconds())
    if durations.get(budget):
        return statistics.fmean(durations[budget])
    if budget is None:
        return None
    per_unit = [s / b for b, runs in durations.items() if b for s in runs]
    return statistics.fmean(per_unit) * budget if per_unit else None


def fits(expected: float | None, elapsed: float, deadline: float | None) -> bool:
    """True when a run expected to take `expected` s, started `elapsed` s into the sweep,
    ends by `deadline` s (no deadline, or no estimate yet: it fits)."""
    if deadline is None or expected is None:
        return True
    return elapsed + expected <= deadline
