"""The job's side of a sweep: find this run's Optuna trial, report epochs, obey the pruner.

The sweeper passes a small `hpo` node to every job (study name, storage URL, trial number,
parent MLflow run). The job reaches its trial through the study storage, so the same code
works in-process, in joblib worker processes and on other hosts sharing a database.
`train.py` run on its own has `hpo: null` and gets no link: nothing is reported.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.utils import instantiate
from optuna import TrialPruned

from hpo.storage import open_storage

log = logging.getLogger(__name__)

__all__ = ["TrialLink", "TrialPruned", "TrialReporter", "register_trial", "unregister_trial"]

# Trials a sweeper in this process is running, by (study name, trial number): an in-process
# job reports to the very same object (required for in-memory storage, cheaper otherwise).
_LOCAL_TRIALS: dict[tuple[str, int], optuna.Trial] = {}
_LOCK = threading.Lock()


def register_trial(trial: optuna.Trial) -> None:
    """Let a job running in this process find `trial` without opening the storage."""
    with _LOCK:
        _LOCAL_TRIALS[(trial.study.study_name, trial.number)] = trial


def unregister_trial(trial: optuna.Trial) -> None:
    with _LOCK:
        _LOCAL_TRIALS.pop((trial.study.study_name, trial.number), None)


@dataclass(frozen=True)
class TrialLink:
    """What a job needs to reach its trial and its study's MLflow parent run."""

    study_name: str
    storage: str | None
    trial_number: int
    parent_run_id: str | None = None
    # Trials running at once: the job divides the CPU cores among them.
    workers: int = 1

    @classmethod
    def from_node(cls, node: Mapping[str, Any] | None) -> TrialLink | None:
        """Build from the config's `hpo` node; None when not part of a sweep."""
        if not node:
            return None
        return cls(**dict(node))

    @property
    def run_name(self) -> str:
        """Child-run name that sorts trials in order in the MLflow UI."""
        return f"{self.study_name}-trial-{self.trial_number:04d}"

    @property
    def tags(self) -> dict[str, str]:
        return {"study_name": self.study_name, "trial_number": str(self.trial_number)}


class TrialReporter:
    """Reports one objective value per epoch to the trial and raises `TrialPruned` on cue."""

    def __init__(self, link: TrialLink, pruner_cfg: Mapping[str, Any] | None) -> None:
        self.link = link
        self.trial = _find_trial(link, pruner_cfg)
        # Optuna prunes single-objective studies only.
        self.enabled = len(self.trial.study.directions) == 1

    def report(self, epoch: int, value: float) -> None:
        """Record `value` at step `epoch`; raise TrialPruned when the pruner says so."""
        if not self.enabled:
            return
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at epoch {epoch} with value {value:.4f}")


def _find_trial(link: TrialLink, pruner_cfg: Mapping[str, Any] | None) -> optuna.Trial:
    with _LOCK:
        local = _LOCAL_TRIALS.get((link.study_name, link.trial_number))
    if local is not None:
        return local
    if link.storage is None:
        raise RuntimeError(
            f"study {link.study_name!r} lives in memory in the sweeper's process and this job "
            "runs elsewhere; set hydra.sweeper.storage (e.g. sqlite:///optuna.db) to report "
            "to it from worker processes"
        )
    storage = open_storage(link.storage)
    # The pruner is not stored with the study: rebuild it from the sweeper's config.
    pruner = instantiate(pruner_cfg) if pruner_cfg else None
    study = optuna.load_study(study_name=link.study_name, storage=storage, pruner=pruner)
    study_id = storage.get_study_id_from_name(link.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, link.trial_number)
    return optuna.Trial(study, trial_id)
