"""Multi-fidelity with the budget as a parameter of the run (`hydra.sweeper.fidelity`).

A configuration first runs with the smallest budget (`trainer.epochs=7`, say), as a run of
its own whose whole schedule fits that budget, the way BOHB, DEHB and SMAC hand
`train(config, budget)` its budget. Promotion is asynchronous successive halving (ASHA):
whenever a worker is free, a configuration in the best `1/eta` of the results at a rung that
has not yet run at the next rung is enqueued there and runs again from scratch; otherwise a
new configuration starts at the smallest budget. No worker waits for a rung to fill.

Every run is one Optuna trial. The rung and budget travel in the trial's user attributes
(set when a promotion is enqueued, copied by Optuna's retry of a lost trial), so any
worker may run any queued promotion. Reading the study and enqueueing are two storage
calls: two workers deciding in the same instant may both enqueue one promotion, which then
runs twice at that rung (a run's cost, never a wrong result).

A run below the top budget is told as PRUNED with its value reported at step = its budget:
Optuna's state for "stopped before the full budget". That gives three things without a
rule of our own:
- `study.best_trial`, `optimization_results.yaml`, the report and best-eval see only
  top-budget runs (the COMPLETE ones);
- TPE ranks a pruned trial below every complete one and, among pruned ones, by the step
  reached first and its value second: a low-budget value is never compared with a
  top-budget one (BOHB models the largest budget with results; this is the same order);
- samplers that ignore pruned trials (GP, CMA-ES, NSGA-II) learn from top-budget runs only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, Trial, TrialState

from hpo.errors import UsageError

# User attributes of a run's trial.
RUNG_ATTR = "fidelity_rung"
BUDGET_ATTR = "fidelity_budget"
# The trial number of the configuration's first run (at rung 0): its identity across rungs.
CONFIG_ATTR = "fidelity_config"
# The run this one was promoted from (one rung lower).
PROMOTED_FROM_ATTR = "fidelity_promoted_from"
CARRIED_ATTRS = (RUNG_ATTR, BUDGET_ATTR, CONFIG_ATTR, PROMOTED_FROM_ATTR)

_DONE = (TrialState.COMPLETE, TrialState.PRUNED)


class FidelityConfigError(UsageError, ValueError):
    """`hydra.sweeper.fidelity` is malformed."""


@dataclass(frozen=True)
class Promotion:
    """A configuration to run again one rung higher."""

    params: dict[str, Any]
    rung: int
    budget: float
    config: int
    promoted_from: int

    @property
    def user_attrs(self) -> dict[str, Any]:
        return {
            RUNG_ATTR: self.rung,
            BUDGET_ATTR: self.budget,
            CONFIG_ATTR: self.config,
            PROMOTED_FROM_ATTR: self.promoted_from,
        }


@dataclass(frozen=True)
class Fidelity:
    """The rungs: `budgets[0] < ... < budgets[-1]`, each about `eta` times the one before."""

    key: str
    budgets: tuple[float, ...]
    eta: int

    @classmethod
    def from_setting(cls, node: Mapping[str, Any]) -> Fidelity:
        """Parse `{key, min, max, eta}`, Hyperband's rungs: `max / eta^i` for every i with
        `max / eta^i >= min` (integers when min and max are: epochs), smallest first.

        Raises:
            FidelityConfigError: a missing or unknown field, or values that give no rungs.
        """
        fields = {"key", "min", "max", "eta"}
        unknown, missing = set(node) - fields, fields - set(node) - {"eta"}
        if unknown or missing:
            raise FidelityConfigError(
                f"hydra.sweeper.fidelity={dict(node)} needs key, min, max (and optionally eta), "
                f"e.g. {{key: trainer.epochs, min: 4, max: 20, eta: 3}}"
                + (f"; unknown: {sorted(unknown)}" if unknown else "")
                + (f"; missing: {sorted(missing)}" if missing else "")
            )
        key, low, high, eta = node["key"], node["min"], node["max"], node.get("eta", 3)
        if not isinstance(key, str) or not key:
            raise FidelityConfigError(f"hydra.sweeper.fidelity.key={key!r} must be a config key")
        if not isinstance(eta, int) or eta < 2:
            raise FidelityConfigError(f"hydra.sweeper.fidelity.eta={eta!r} must be an int >= 2")
        numbers = (int, float)
        if not isinstance(low, numbers) or not isinstance(high, numbers) or not 0 < low < high:
            raise FidelityConfigError(
                f"hydra.sweeper.fidelity min={low!r}, max={high!r}: need 0 < min < max"
            )
        integral = isinstance(low, int) and isinstance(high, int)
        # The float tolerance keeps max/eta^i == min (e.g. 27 / 3^2 = 3) a rung.
        rungs = math.floor(math.log(high / low, eta) + 1e-9)
        budgets: list[float] = []
        for i in range(rungs, -1, -1):
            budget: float = high / eta**i
            budget = max(round(budget), int(low)) if integral else budget
            if not budgets or budget > budgets[-1]:
                budgets.append(budget)
        if len(budgets) < 2:
            raise FidelityConfigError(
                f"hydra.sweeper.fidelity min={low}, max={high}, eta={eta} gives one rung "
                f"({budgets}); lower min or eta so that max / eta >= min"
            )
        return cls(key=key, budgets=tuple(budgets), eta=eta)

    @property
    def top(self) -> int:
        return len(self.budgets) - 1

    def override(self, budget: float) -> str:
        """The Hydra override that gives a run its budget."""
        return f"{self.key}={budget}"

    def step(self, rung: int) -> int:
        """The step a run's value is reported at: its budget when budgets are integers
        (epochs), else its rung; either way, higher for a higher rung."""
        budget = self.budgets[rung]
        return int(budget) if float(budget).is_integer() else rung

    def rung_of(self, trial: FrozenTrial | Trial) -> int:
        """A trial's rung; a trial without one (a new or warm-start configuration) is rung 0,
        and one recorded above the top rung (a study resumed with fewer rungs) is the top."""
        return min(int(trial.user_attrs.get(RUNG_ATTR, 0)), self.top)

    def start_attrs(self, number: int) -> dict[str, Any]:
        """The attributes of a configuration's first run, trial `number`."""
        return {RUNG_ATTR: 0, BUDGET_ATTR: self.budgets[0], CONFIG_ATTR: number}

    def results(self, trials: Sequence[FrozenTrial], rung: int) -> list[FrozenTrial]:
        """The runs finished at `rung` with a value (complete or pruned)."""
        return [
            t
            for t in trials
            if t.state in _DONE and t.value is not None and self.rung_of(t) == rung
        ]

    def promotion(
        self,
        trials: Sequence[FrozenTrial],
        maximize: bool,
        fits: Callable[[float], bool] = lambda _budget: True,
    ) -> Promotion | None:
        """The next configuration to promote, highest rung first, or None.

        At each rung, the best `len(results) // eta` runs are eligible (ASHA); one whose
        configuration has any run at the next rung (queued, running, done or failed) is
        skipped. A promotion whose budget does not `fit` (the deadline) is not offered.
        """
        for rung in range(self.top - 1, -1, -1):
            budget = self.budgets[rung + 1]
            if not fits(budget):
                continue
            done = self.results(trials, rung)
            ranked = sorted(done, key=lambda t: float(t.value or 0.0), reverse=maximize)
            # Any run at the next rung counts (queued, running, done or failed): a failed
            # promotion is retried by the liveness rules, not promoted twice.
            above = {_config(t) for t in trials if self.rung_of(t) == rung + 1}
            for run in ranked[: len(done) // self.eta]:
                if _config(run) not in above:
                    return Promotion(
                        params=dict(run.params),
                        rung=rung + 1,
                        budget=budget,
                        config=_config(run),
                        promoted_from=run.number,
                    )
        return None


def carried_attrs(user_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The fidelity attributes of a trial, for a trial that runs it again."""
    return {k: v for k, v in user_attrs.items() if k in CARRIED_ATTRS}


def _config(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(CONFIG_ATTR, trial.number))
