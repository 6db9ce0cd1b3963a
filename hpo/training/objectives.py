"""The metrics a run can return to a sweeper, and which way is better for each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Direction = Literal["maximize", "minimize"]

# Metrics a run can be judged by. Epoch metrics come from validation; model/params is the
# parameter count, for multi-objective searches that trade accuracy against size.
DIRECTIONS: dict[str, Direction] = {
    "val/acc": "maximize",
    "val/loss": "minimize",
    "model/params": "minimize",
}


def parse_objective(objective: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise the `objective` setting to a tuple of known metric names.

    Raises:
        ValueError: for an empty list, a duplicate or an unknown metric name.
    """
    names = (objective,) if isinstance(objective, str) else tuple(str(o) for o in objective)
    if not names:
        raise ValueError(f"objective is empty; use one or more of {', '.join(DIRECTIONS)}")
    unknown = [n for n in names if n not in DIRECTIONS]
    if unknown:
        raise ValueError(
            f"objective={list(names)}: unknown metric {unknown[0]!r}; "
            f"use one or more of {', '.join(DIRECTIONS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"objective={list(names)} names a metric twice")
    return names


def is_improvement(new: float, best: float | None, metric: str) -> bool:
    """True when `new` beats `best` (None = nothing yet) for `metric`."""
    if best is None:
        return True
    return new > best if DIRECTIONS[metric] == "maximize" else new < best
