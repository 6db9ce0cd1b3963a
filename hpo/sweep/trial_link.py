"""The job's side of a sweep: the typed link to its Optuna trial, per-epoch reports, pruning.

The sweeper builds one `TrialLink` per trial and passes it to the job as the config node
named `LINK_KEY` (a Hydra override); the job reads the same dataclass back with
`TrialLink.from_config`. The job reaches its trial through the study storage, so the same
code works in-process, in joblib worker processes and on other hosts sharing a database.
`train.py` run on its own has `hpo: null` and gets no link: nothing is reported.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any, cast

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna import TrialPruned

from hpo.sweep.liveness import RUN_ID_ATTR
from hpo.sweep.search_space import render_value
from hpo.sweep.storage import open_storage
from hpo.urls import job_storage

log = logging.getLogger(__name__)

__all__ = [
    "LINK_KEY",
    "TrialLink",
    "TrialPruned",
    "TrialReporter",
    "register_trial",
    "unregister_trial",
]

# The config key that carries the link: an app takes part in sweeps by having this node
# (`hpo: null` in conf/config.yaml).
LINK_KEY = "hpo"

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


# Not frozen: OmegaConf makes a frozen dataclass's config node read-only, and Hydra must
# merge the YAML values and overrides into this schema.
@dataclass
class TrialLink:
    """What a job needs to reach its trial, its pruner and its study's MLflow parent run.

    Field types are ones OmegaConf can check: the job reads the node back through this
    dataclass as a schema.
    """

    study_name: str
    storage: str | None
    trial_number: int
    parent_run_id: str | None = None
    # Trials running at once: the job divides the CPU cores among them.
    workers: int = 1
    # The pruner's config (`_target_` and arguments): Optuna does not store the pruner with
    # the study, so a job in another process rebuilds it from here.
    pruner: dict[str, Any] | None = None
    # Set when this trial runs again the params of a trial whose worker died: that trial's
    # number and its (KILLED) MLflow run, so the new run links back to it.
    retry_of: int | None = None
    retry_of_run_id: str | None = None
    # Multi-fidelity (`hydra.sweeper.fidelity`): this run's budget and rung, and the run of
    # the same configuration one rung lower that it was promoted from. A run with a rung
    # reports nothing per epoch: promotion judges whole runs, and the sweeper records
    # the value at the end.
    budget: Any = None  # int or float, as the fidelity's min and max are
    rung: int | None = None
    promoted_from: int | None = None
    promoted_from_run_id: str | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrialLink | None:
        """The link in a composed job config; None when the job is not part of a sweep."""
        node = cfg.get(LINK_KEY)
        if node is None:
            return None
        # Merged into the dataclass schema: a missing, unknown or mistyped field fails here.
        return cast(TrialLink, OmegaConf.to_object(OmegaConf.merge(cls, node)))

    def to_override(self) -> str:
        """The Hydra override that hands this link to the job."""
        return f"{LINK_KEY}={render_value(dataclasses.asdict(self))}"

    @staticmethod
    def is_override(override: str) -> bool:
        """True for the override `to_override` makes (left out of a run's provenance)."""
        return override.startswith(f"{LINK_KEY}=")

    @property
    def run_name(self) -> str:
        """Child-run name that sorts trials in order in the MLflow UI."""
        return f"{self.study_name}-trial-{self.trial_number:04d}"

    @property
    def tags(self) -> dict[str, str]:
        tags = {"study_name": self.study_name, "trial_number": str(self.trial_number)}
        if self.retry_of is not None:
            tags["retry_of_trial"] = str(self.retry_of)
        if self.retry_of_run_id:
            tags["retry_of_run_id"] = self.retry_of_run_id
        if self.rung is not None:
            tags["fidelity_rung"] = str(self.rung)
            tags["fidelity_budget"] = render_value(self.budget)
        if self.promoted_from is not None:
            tags["promoted_from_trial"] = str(self.promoted_from)
        if self.promoted_from_run_id:
            tags["promoted_from_run_id"] = self.promoted_from_run_id
        return tags


class TrialReporter:
    """Reports one objective value per epoch to the trial and raises `TrialPruned` on cue."""

    def __init__(self, link: TrialLink) -> None:
        self.link = link
        self.trial = _find_trial(link)
        # Optuna prunes single-objective studies only; a multi-fidelity run is judged whole.
        self.enabled = len(self.trial.study.directions) == 1 and link.rung is None

    def record_run(self, run_id: str) -> None:
        """Store the trial's MLflow run id on the trial: if its worker dies, the worker that
        finds the trial stale ends this run KILLED and the retry links back to it."""
        self.trial.set_user_attr(RUN_ID_ATTR, run_id)

    def report(self, epoch: int, value: float) -> None:
        """Record `value` at step `epoch`; raise TrialPruned when the pruner says so."""
        if not self.enabled:
            return
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at epoch {epoch} with value {value:.4f}")


def _find_trial(link: TrialLink) -> optuna.Trial:
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
    storage = open_storage(job_storage(link.storage))
    pruner = instantiate(link.pruner) if link.pruner else None
    study = optuna.load_study(study_name=link.study_name, storage=storage, pruner=pruner)
    study_id = storage.get_study_id_from_name(link.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, link.trial_number)
    return optuna.Trial(study, trial_id)
