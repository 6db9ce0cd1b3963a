"""A toy task for the sweeper: no torch, no data, no MLflow; a trial takes milliseconds.

`python tests/toy_app/app.py -m` runs the project's Optuna sweeper over it (the plugin's
own `hydra/sweeper=optuna`, not the training app's). The sweeper's rules (budgets,
failures, pruning, retries, several workers) are tested through it in milliseconds
(`tests/hpo/sweep/test_sweeper_rules.py`), and `bench/scale.py` runs many sweep processes
of it on one study with `sleep` set, as a stand-in for a real training.

The objective is `(x - 0.3)^2 + 0.1 * y`, reported at every step (like an epoch's
validation value) to the trial, so a pruner can stop it. `outcome` chooses what the job
does at its end: return the value (`ok`), return NaN (`nonfinite`), raise an ordinary error
(`raise`) or a usage error (`usage`, as a config error every trial would hit); `fail_above`
raises for trials whose `x` exceeds it (a failure that depends on the params). `check` is
its `hydra.sweeper.check_job_config` (unknown keys are a usage error).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from hpo.errors import UsageError
from hpo.sweep.trial_link import TrialLink, TrialReporter

CONFIG_DIR = str(Path(__file__).resolve().parent)


class ToyTaskError(RuntimeError):
    """What `outcome=raise` raises: an error of the task, not of its input."""


def objective(x: float, y: int) -> float:
    return (x - 0.3) ** 2 + 0.1 * y


def run(cfg: DictConfig) -> float:
    """One trial of the toy task (the body of `main`, callable without Hydra)."""
    link = TrialLink.from_config(cfg)
    reporter = TrialReporter(link) if link is not None else None
    value = objective(float(cfg.x), int(cfg.y))
    if reporter is not None and cfg.record_run_id:
        reporter.record_run(f"toy-run-{reporter.link.trial_number}")
    if reporter is not None and reporter.link.rung is not None:
        # The budget the job was given, for the tests of multi-fidelity.
        reporter.trial.set_user_attr("toy_steps", int(cfg.steps))
    for step in range(1, int(cfg.steps) + 1):
        if cfg.sleep:
            time.sleep(float(cfg.sleep))
        if reporter is not None:
            # Better (lower) with every step, as a validation loss would be.
            reporter.report(step, value + 0.01 * (int(cfg.steps) - step))
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ToyTaskError(f"x={cfg.x} is above fail_above={cfg.fail_above}")
    if cfg.outcome == "raise":
        raise ToyTaskError("the toy task failed as asked (outcome=raise)")
    if cfg.outcome == "usage":
        raise UsageError("toy.unknown_key is not a setting (outcome=usage)")
    if cfg.outcome == "nonfinite":
        return math.nan
    if cfg.short_run_bonus:  # a short run that looks better than a long one
        return value - float(cfg.short_run_bonus) / max(int(cfg.steps), 1)
    return value


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    main()


KNOWN_KEYS = frozenset(
    {"x", "y", "steps", "sleep", "outcome", "fail_above", "record_run_id", "short_run_bonus"}
)


def check(cfg: DictConfig) -> tuple[str, ...]:
    """The toy's `hydra.sweeper.check_job_config`: reject unknown keys, name the objective."""
    unknown = sorted(str(k) for k in cfg if k not in KNOWN_KEYS | {"hpo", "tracking"})
    if unknown:
        raise UsageError(f"{', '.join(unknown)}: not a setting of the toy task")
    return ("value",)
