"""Find a study's best trial and everything its MLflow run recorded; read-only throughout."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import UsageError
from hpo.paths import sqlite_database
from hpo.sweep.storage import open_storage
from hpo.tracking import recording
from hpo.tracking.runs import ArtifactUnavailableError, TrackedRun, find_trial_run
from hpo.tracking.settings import TrackingSettings
from hpo.urls import SecretUrl

log = logging.getLogger(__name__)

SWEEP_HINT = "run `make sweep` first (or pass study=... storage=... of an existing study)"


class BestEvalError(UsageError):
    """The study, its best trial or the trial's recorded artifacts cannot be found or used."""


@dataclass(frozen=True)
class TrialRecord:
    """The chosen trial with what its child run recorded."""

    study_name: str
    trial: FrozenTrial
    run_id: str
    parent_run_id: str | None
    config: DictConfig
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    history: list[dict[str, float]]

    @property
    def val_acc(self) -> float | None:
        values = [h["val/acc"] for h in self.history if "val/acc" in h]
        best_epoch = int(self.meta.get("best_epoch", 0))
        if 0 < best_epoch <= len(values):
            return values[best_epoch - 1]
        return max(values) if values else None


def load_study(study_name: str | None, storage: SecretUrl | str) -> optuna.Study:
    """Open an existing study without creating anything (no new database, no new study).

    With no `study_name`, the most recent study in the storage (the one whose first trial
    started last): after `make sweep EXPERIMENT=accuracy`, `make best-eval` retests that.
    """
    storage = SecretUrl(storage)
    database = sqlite_database(storage)
    if database is not None and not database.exists():
        raise BestEvalError(f"no Optuna storage at {database}; {SWEEP_HINT}")
    opened = open_storage(storage)
    if study_name is None:
        study_name = most_recent_study(opened, storage)
    try:
        return optuna.load_study(study_name=study_name, storage=opened)
    except KeyError as exc:
        names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
        raise BestEvalError(
            f"no study {study_name!r} in {storage} (studies there: {names or 'none'}); {SWEEP_HINT}"
        ) from exc


def most_recent_study(storage: optuna.storages.BaseStorage, shown: SecretUrl) -> str:
    """The name of the study whose first trial started last (a study without trials counts
    as oldest), said in the log with the others there."""
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        raise BestEvalError(f"no study in {shown} yet; {SWEEP_HINT}")
    oldest = datetime.min
    chosen = max(summaries, key=lambda s: (s.datetime_start or oldest, s.study_name))
    others = sorted(s.study_name for s in summaries if s is not chosen)
    log.info(
        "No study given: retesting %r, the most recent of the %d in %s%s; choose another with "
        "STUDY=<name> (make best-eval) or study=<name>",
        chosen.study_name,
        len(summaries),
        shown,
        f" (the others: {', '.join(others)})" if others else "",
    )
    return chosen.study_name


def choose_trial(study: optuna.Study, objective_index: int = 0) -> FrozenTrial:
    """The best completed trial; with several objectives, the Pareto-front trial that is best
    on objective `objective_index`."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise BestEvalError(f"study {study.study_name!r} has no completed trial yet; {SWEEP_HINT}")
    if len(study.directions) == 1:
        return study.best_trial
    if not 0 <= objective_index < len(study.directions):
        raise BestEvalError(
            f"objective_index={objective_index} but the study has {len(study.directions)} "
            "objectives; use 0.." + str(len(study.directions) - 1)
        )
    maximize = study.directions[objective_index] == optuna.study.StudyDirection.MAXIMIZE
    front = sorted(study.best_trials, key=lambda t: (t.values[objective_index], -t.number))
    return front[-1] if maximize else front[0]


def ranked_trials(study: optuna.Study, count: int, objective_index: int = 0) -> list[FrozenTrial]:
    """`choose_trial`'s trial, then the next best completed trials on objective
    `objective_index`: up to `count` in all (best-eval's `ensemble`).

    Completed trials only: under `hydra.sweeper.fidelity` those are the top-budget runs
    (lower rungs end PRUNED), so no member was trained with a smaller budget. Fewer than
    `count` are returned, with a warning, when fewer have completed.
    """
    if count < 1:
        raise BestEvalError(f"ensemble={count}: it must be 1 (one model) or more")
    chosen = choose_trial(study, objective_index)
    sign = -1.0 if study.directions[objective_index].name == "MAXIMIZE" else 1.0
    others = sorted(
        (
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.number != chosen.number
        ),
        key=lambda t: (sign * t.values[objective_index], t.number),
    )
    ranked = [chosen, *others[: count - 1]]
    if len(ranked) < count:
        log.warning(
            "%d of the best trials asked for, but study %r has %d completed (top-budget) "
            "trial(s): using %d",
            count,
            study.study_name,
            len(ranked),
            len(ranked),
        )
    return ranked


def load_record(settings: TrackingSettings, study_name: str, trial: FrozenTrial) -> TrialRecord:
    """Download the trial run's config, best-epoch weights and metrics."""
    run = find_trial_run(settings, study_name, trial.number)
    if run is None:
        raise BestEvalError(
            f"trial {trial.number} of study {study_name!r} has no MLflow run in "
            f"{settings.uri} (experiment {settings.experiment!r}); was the sweep run with "
            "tracking.enabled=false or another tracking.uri?"
        )
    with tempfile.TemporaryDirectory() as tmp:
        config = OmegaConf.load(_fetch(run, recording.CONFIG_ARTIFACT, tmp))
        checkpoint = _fetch(run, recording.CHECKPOINT_ARTIFACT, tmp)
        meta = json.loads(_fetch(run, recording.CHECKPOINT_META_ARTIFACT, tmp).read_text())
        try:
            state = recording.load_state_dict(checkpoint)
        except Exception as exc:
            raise BestEvalError(
                f"run {run.run_id}: {recording.CHECKPOINT_ARTIFACT} cannot be loaded ({exc})"
            ) from exc
    assert isinstance(config, DictConfig)
    return TrialRecord(
        study_name=study_name,
        trial=trial,
        run_id=run.run_id,
        parent_run_id=run.parent_run_id(),
        config=config,
        state_dict=state,
        meta=meta,
        history=run.history(("train/loss", "train/acc", "val/loss", "val/acc")),
    )


def _fetch(run: TrackedRun, artifact: str, folder: str) -> Path:
    try:
        return run.download(artifact, folder)
    except ArtifactUnavailableError as exc:
        raise BestEvalError(
            f"{exc}. It was recorded with tracking.log_checkpoint=false or its artifacts "
            "were deleted; retest with retrain=true, or pick another study"
        ) from exc
