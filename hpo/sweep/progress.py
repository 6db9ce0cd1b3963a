"""What one sweep invocation has done, and how a finished Hydra job is read.

Both the sweeper (which fills a `SweepProgress`) and the report (which prints it) import
this module; it imports neither of them.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field

from hydra.core.utils import JobReturn, JobStatus
from optuna import TrialPruned
from optuna.trial import TrialState

from hpo.urls import mask_urls


@dataclass
class SweepProgress:
    """What this invocation of the sweep has done so far."""

    started: float = field(default_factory=time.monotonic)
    told: dict[int, TrialState] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)

    def count(self, state: TrialState) -> int:
        return sum(1 for s in self.told.values() if s == state)

    def failures_in_a_row(self) -> int:
        """How many of the last trials told (in the order told) failed, back to the last
        one that did not."""
        streak = 0
        for state in reversed(self.told.values()):
            if state != TrialState.FAIL:
                break
            streak += 1
        return streak

    def seconds(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class Outcome:
    """How Optuna should be told about a finished job."""

    state: TrialState
    values: float | list[float] | None = None
    error: str | None = None


def job_outcome(result: JobReturn, n_objectives: int) -> Outcome:
    """Read a finished job through `JobReturn`'s public `status` and `return_value`."""
    if result.status != JobStatus.COMPLETED:
        return _failed_job(result)
    value = result.return_value
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) != n_objectives:
        expected = f"expected {n_objectives} value(s)"
        return Outcome(TrialState.FAIL, error=f"returned {value!r}; {expected}")
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return Outcome(TrialState.FAIL, error=f"returned {value!r}, not a number")
    if not all(math.isfinite(v) for v in numbers):
        return Outcome(TrialState.FAIL, error=f"returned {value!r} (not finite)")
    return Outcome(TrialState.COMPLETE, numbers[0] if n_objectives == 1 else numbers)


def _failed_job(result: JobReturn) -> Outcome:
    # `return_value` re-raises the job's exception after writing "Error executing job with
    # overrides ..." to stderr; the sweeper logs every failure itself (and a pruned trial is
    # no error), so that line is captured, not shown.
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            result.return_value  # noqa: B018 - read for the exception it raises
    except TrialPruned:
        return Outcome(TrialState.PRUNED)
    except Exception as exc:
        # Kept on the trial and logged: an error that quotes a URL (MLflow's does) is masked.
        return Outcome(TrialState.FAIL, error=mask_urls(f"{type(exc).__name__}: {exc}"))
    return Outcome(TrialState.FAIL, error=f"job ended with status {result.status.name}")


def describe(outcome: Outcome) -> str:
    """The log text of an outcome: its value(s) or its error."""
    return f"value {outcome.values}" if outcome.values is not None else (outcome.error or "")
