"""`make best-eval`: retest a study's best trial on the official test set, once.

The search chose the trial on the validation split; this is the only code path that reads
the 10k test set (through `load_test`). It never writes to the study: it reads the trial,
rebuilds the model from the trial's own recorded config and weights (or retrains that
config on all 60k training images), evaluates it once, and records a new `best-eval`
MLflow run, a report folder and a registered model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from data import TensorBatchLoader
from hpo import builders
from hpo.errors import exit_on_user_error, first_line
from hpo.paths import PROJECT_ROOT
from hpo.retest.best_trial import BestEvalError, TrialRecord, load_record, load_study, ranked_trials
from hpo.retest.metrics import RetestReport, score_predictions
from hpo.schema import register_configs
from hpo.tracking.figures import confusion_matrices, learning_curves, prediction_grid
from hpo.tracking.registry import Registration, register
from hpo.tracking.runs import STUDY_TAG, open_run
from hpo.tracking.settings import TrackingSettings
from hpo.training.allocator import keep_freed_memory
from hpo.training.devices import configure_threads, resolve_device
from hpo.training.loop import FitResult, fit, predict
from hpo.training.precision import Precision, resolve_precision
from hpo.training.seeding import seed_everything
from hpo.urls import SecretUrl
from models import FlipTTA, ProbabilityEnsemble, RawPixelClassifier

log = logging.getLogger(__name__)
# Before Hydra composes conf/best_eval.yaml.
register_configs()

REPORT_ARTIFACT = "best_eval/report.json"

# Trainer settings added after some studies were recorded, as those trials trained.
_ADDED_TRAINER_KEYS = {
    "ema": None,
    "ema_warmup_epochs": 0,
    "tta": False,
    "tta_translate": 0,
    "no_decay_norm_bias": False,
    "norm_bias_lr_scale": 1.0,
}


@dataclass
class Retested:
    """A model ready for the test set, with the normalisation it was trained with."""

    model: torch.nn.Module
    mean: float
    std: float
    source: str  # "checkpoint" or "retrain"
    # The trial's own autocast, so the test set is scored the way validation was.
    precision: Precision
    # True when `model` is wrapped in FlipTTA (tested and registered with the flip).
    tta: bool = False
    # What `model` averages, e.g. ("trial 11 retrained on 60000 images", "trial 11").
    members: tuple[str, ...] = ()


def best_eval(cfg: DictConfig) -> dict[str, Any]:
    """Run the retest described by `cfg` (conf/best_eval.yaml); return the report dict."""
    settings = TrackingSettings.from_config(cfg.tracking)
    if not settings.enabled:
        raise BestEvalError("best-eval reads the trial from MLflow: run it with tracking enabled")
    storage = SecretUrl(cfg.storage)  # shown masked in the log and the report
    log.info("Loading study %s from %s", repr(cfg.study) if cfg.study else "(latest)", storage)
    study = load_study(cfg.study, storage)
    if int(cfg.ensemble) < 1:
        raise BestEvalError(f"ensemble={cfg.ensemble}: it must be 1 (one model) or more")
    # The trials whose own weights are tested: with retrain, the retrained model takes one
    # of the ensemble's places.
    checkpoints = int(cfg.ensemble) - 1 if cfg.retrain else int(cfg.ensemble)
    trials = ranked_trials(study, max(checkpoints, 1), cfg.objective_index)
    records = [load_record(settings, study.study_name, trial) for trial in trials]
    record = records[0]
    log.info("Best trial %d (run %s): %s", record.trial.number, record.run_id, record.trial.params)
    device = resolve_device("auto")
    # Runs recorded before trainer.precision existed trained in fp32.
    precision = resolve_precision(
        str(OmegaConf.select(record.config, "trainer.precision", default="fp32")), device
    )
    configure_threads(None)
    keep_freed_memory()
    parts = [_retrain(record, cfg.epochs, device, precision)] if cfg.retrain else []
    parts += [rebuild(r, device, precision) for r in records[:checkpoints]]
    retested = ensemble(parts)
    if len(parts) > 1:
        log.info(
            "Ensemble: class probabilities averaged over %d models: %s",
            len(parts),
            "; ".join(retested.members),
        )
    if _tta(cfg, record):
        # The mirror image, and the shifted images if the trial used them (or tta_translate).
        translate = _tta_translate(cfg, record)
        log.info(
            "Test-time augmentation on: logits averaged with the mirror image%s",
            f" and the images shifted by {translate} px" if translate else "",
        )
        retested = replace(retested, model=FlipTTA(retested.model, translate), tta=True)

    log.info("Evaluating once on the test set")
    with builders.dataset_files():
        images, labels = builders.build(record.config.data).load_test()
    logits = _test_logits(retested, images, labels, device)
    class_names = list(record.meta.get("class_names") or [str(i) for i in range(logits.shape[1])])
    report = score_predictions(logits, labels, class_names)
    summary = _summary_dict(cfg, record, retested, report)
    out_dir = Path(cfg.reports_dir) / record.study_name
    figures = _figures(record, report, images, labels, logits, class_names, cfg.grid_images)
    with open_run(settings, run_name="best-eval", tags=_tags(record, retested)) as run:
        assert run is not None
        run.log_metrics(_metrics(report, record))
        for name, figure in figures.items():
            run.log_figure(figure, f"best_eval/{name}.png")
        if cfg.register:
            registration = _register(cfg, settings, run.run_id, record, retested, report, images)
            summary["registry"] = {
                "name": registration.name,
                "version": registration.version,
                "champion": registration.champion,
                "note": registration.describe(),
            }
        # Once, complete: after the registry note and with the run that holds it.
        summary["mlflow_run_id"] = run.run_id
        run.log_dict(summary, REPORT_ARTIFACT)
    _write_reports(out_dir, summary, report, figures)
    Console().print(_summary_table(summary, out_dir))
    return summary


def _tta(cfg: DictConfig, record: TrialRecord) -> bool:
    """best-eval's `tta` when set, else the trial's own trainer.tta (off in older trials)."""
    if cfg.tta is not None:
        return bool(cfg.tta)
    return bool(OmegaConf.select(record.config, "trainer.tta", default=False))


def _tta_translate(cfg: DictConfig, record: TrialRecord) -> int:
    """best-eval's `tta_translate` when set, else the trial's own trainer.tta_translate."""
    if cfg.tta_translate is not None:
        return int(cfg.tta_translate)
    return int(OmegaConf.select(record.config, "trainer.tta_translate", default=0))


def ensemble(parts: Sequence[Retested]) -> Retested:
    """`parts` as one model that averages their class probabilities (`ProbabilityEnsemble`),
    fed with the first part's normalisation and scored under its precision; the first part
    itself when it is the only one (also `bench/tta_check.py`'s)."""
    if len(parts) == 1:
        return parts[0]
    model = ProbabilityEnsemble([p.model for p in parts], stats=[(p.mean, p.std) for p in parts])
    members = tuple(member for p in parts for member in p.members)
    return replace(parts[0], model=model, members=members)


def rebuild(record: TrialRecord, device: torch.device, precision: Precision) -> Retested:
    """The trial's own model with its best-epoch weights, as the search chose it (also
    `bench/tta_check.py`'s)."""
    model = builders.build(record.config.model)
    try:
        model.load_state_dict(record.state_dict)
    except RuntimeError as exc:
        raise BestEvalError(
            f"run {record.run_id}: checkpoints/best_state_dict.pt does not fit the model of "
            f"the trial's config.yaml ({first_line(exc)})"
        ) from exc
    mean, std = float(record.meta["mean"]), float(record.meta["std"])
    return Retested(
        model.to(device),
        mean,
        std,
        "checkpoint",
        precision,
        members=(f"trial {record.trial.number}",),
    )


def _retrain(
    record: TrialRecord, epochs: int | None, device: torch.device, precision: Precision
) -> Retested:
    """Train the trial's config from scratch on all training images (train + validation)."""
    return retrain(record, epochs=epochs, device=device, precision=precision)[0]


def retrain(
    record: TrialRecord,
    *,
    epochs: int | None,
    device: torch.device,
    precision: Precision,
    validate: bool = False,
    seed: int | None = None,
) -> tuple[Retested, FitResult]:
    """Train the trial's config from scratch: on all training images (train + validation),
    or with `validate` on the 50k train split, scored on the validation split every epoch
    (how `bench/retrain_check.py` tells whether the recipe reproduces the trial).

    Through the trials' own `fit`: the same loader code, precision, gradient scaler and
    weight average; under the trial's trainer.ema the average is what gets tested, as in
    the trial. Without validation every epoch is trained: trainer.patience has nothing to
    stop on. `seed` replaces the trial's seed (weights, batch order, augmentation).
    """
    cfg = OmegaConf.merge({"trainer": _ADDED_TRAINER_KEYS}, record.config)
    assert isinstance(cfg, DictConfig)
    if seed is not None:
        cfg.seed = seed
    epochs = int(epochs or cfg.trainer.epochs)
    seed_everything(cfg.seed)
    splits = builders.splits(cfg)
    data = splits if validate else splits.merged()
    batches = builders.train_loader(cfg, data, device)
    val_batches = builders.loaders(cfg, splits, device)[1] if validate else None
    # A whitening first layer is computed from the training split, as the trial's was (its
    # normalisation differs from all 60k's by a hair).
    model = builders.model(cfg, device, splits)
    optimizer, scheduler, settings = builders.optimization(
        cfg, model, len(batches), precision, epochs
    )
    if not validate:
        if settings.patience is not None:
            log.info("trainer.patience=%d unused: the retrain has no validation", settings.patience)
        settings = replace(settings, patience=None)
    log.info(
        "Retraining on %d training images for %d epochs (seed %d)%s",
        len(data.train_labels),
        epochs,
        cfg.seed,
        ", validating each" if validate else "",
    )
    result = fit(
        model, batches, val_batches, optimizer=optimizer, scheduler=scheduler, settings=settings
    )
    model.load_state_dict(result.best_state)  # the final weights (the average's under EMA)
    described = f"trial {record.trial.number} retrained on {len(data.train_labels)} images"
    retested = Retested(
        model,
        data.mean,
        data.std,
        "retrain",
        precision,
        members=(f"{described} (seed {cfg.seed})",),
    )
    return retested, result


def _test_logits(
    retested: Retested, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> torch.Tensor:
    batches = TensorBatchLoader(
        images,
        labels,
        batch_size=1000,
        mean=retested.mean,
        std=retested.std,
        shuffle=False,
        device=device,
    )
    logits, _ = predict(retested.model, batches, retested.precision)
    return logits


def _figures(
    record: TrialRecord,
    report: RetestReport,
    images: torch.Tensor,
    labels: torch.Tensor,
    logits: torch.Tensor,
    class_names: list[str],
    grid_images: int,
) -> dict[str, Any]:
    figures = {
        "confusion_matrix": confusion_matrices(report.confusion, class_names),
        "test_predictions": prediction_grid(
            images[:grid_images],
            labels[:grid_images],
            logits[:grid_images].softmax(dim=1),
            class_names,
            title="Test predictions (mistakes in red)",
        ),
    }
    if record.history:
        figures["learning_curves"] = learning_curves(
            record.history, int(record.meta.get("best_epoch", 0)) or None
        )
    return figures


def _register(
    cfg: DictConfig,
    settings: TrackingSettings,
    run_id: str,
    record: TrialRecord,
    retested: Retested,
    report: RetestReport,
    images: torch.Tensor,
) -> Registration:
    wrapped = RawPixelClassifier(retested.model.cpu().float(), mean=retested.mean, std=retested.std)
    registration = register(
        wrapped,
        tracking_uri=settings.uri,
        run_id=run_id,
        name=cfg.model_name,
        test_acc=report.accuracy,
        example=images[:4].float(),
        tags={
            "study": record.study_name,
            "trial": record.trial.number,
            "source": retested.source,
            "ensemble": "; ".join(retested.members),
        },
    )
    log.info("%s", registration.describe())
    return registration


def _tags(record: TrialRecord, retested: Retested) -> dict[str, str]:
    return {
        STUDY_TAG: record.study_name,
        "best_eval_of_trial": str(record.trial.number),
        "trial_run_id": record.run_id,
        "study_parent_run_id": record.parent_run_id or "",
        "source": retested.source,
        "precision": retested.precision.name,
        "tta": str(retested.tta).lower(),
        "ensemble": "; ".join(retested.members),
        "mlflow.note.content": (
            f"Test-set retest of trial {record.trial.number} of study {record.study_name} "
            f"(trial run {record.run_id}, study run {record.parent_run_id}); "
            f"weights from: {retested.source}"
            + (
                f"; probabilities averaged over {_listed(retested.members)}"
                if len(retested.members) > 1
                else ""
            )
            + "."
        ),
    }


def _metrics(report: RetestReport, record: TrialRecord) -> dict[str, float]:
    metrics = {
        "test/acc": report.accuracy,
        "test/acc_ci95_low": report.accuracy_ci95[0],
        "test/acc_ci95_high": report.accuracy_ci95[1],
        "test/loss": report.loss,
    }
    for scores in report.per_class:
        metrics[f"test/f1/{scores.name.replace('/', '_')}"] = scores.f1
    if record.val_acc is not None:
        metrics["val/acc"] = record.val_acc
    return metrics


def _summary_dict(
    cfg: DictConfig, record: TrialRecord, retested: Retested, report: RetestReport
) -> dict[str, Any]:
    return {
        "study": record.study_name,
        "storage": str(SecretUrl(cfg.storage)),
        "trial": record.trial.number,
        "trial_values": record.trial.values,
        "params": record.trial.params,
        "trial_run_id": record.run_id,
        "study_parent_run_id": record.parent_run_id,
        "weights": retested.source,
        "precision": retested.precision.name,
        "tta": retested.tta,
        "ensemble": list(retested.members),
        "val_acc": record.val_acc,
        "test": report.to_dict(),
        "baseline_test_acc": cfg.baseline_test_acc,
        "test_acc_minus_baseline": report.accuracy - cfg.baseline_test_acc,
        "test_acc_minus_val_acc": None
        if record.val_acc is None
        else report.accuracy - record.val_acc,
    }


def _write_reports(
    out_dir: Path, summary: dict[str, Any], report: RetestReport, figures: dict[str, Any]
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "report.md").write_text(_markdown(summary, report))
    for name, figure in figures.items():
        figure.savefig(out_dir / f"{name}.png", dpi=110)
    log.info("Wrote the report and figures to %s", out_dir)


def _markdown(summary: dict[str, Any], report: RetestReport) -> str:
    low, high = report.accuracy_ci95
    lines = [
        f"# Best-trial retest: study `{summary['study']}`, trial {summary['trial']}",
        "",
        f"- Params: `{json.dumps(summary['params'])}`",
        f"- Weights: {summary['weights']}{' with flip TTA' if summary['tta'] else ''} "
        f"(trial run `{summary['trial_run_id']}`)",
        f"- Models averaged: {_listed(summary['ensemble'])}",
        f"- **Test accuracy: {report.accuracy:.4f}** (95% CI {low:.4f}-{high:.4f}, "
        f"{report.num_samples} images), test loss {report.loss:.4f}",
        f"- Validation accuracy of the trial: {_pct(summary['val_acc'])}",
        f"- Original project's test accuracy: {_pct(summary['baseline_test_acc'])} "
        f"(difference {summary['test_acc_minus_baseline'] * 100:+.2f} points)",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {c.name} | {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | {c.support} |"
            for c in report.per_class
        ),
        "",
        "Most confused (true -> predicted): " + _pairs(report),
        "",
        "![confusion matrix](confusion_matrix.png)",
        "![test predictions](test_predictions.png)",
        "![learning curves](learning_curves.png)",
        "",
    ]
    if "registry" in summary:
        lines.insert(7, f"- Registry: {summary['registry']['note']}")
    return "\n".join(lines)


def _listed(members: Sequence[str]) -> str:
    return "; ".join(members) if len(members) > 1 else "one (no ensemble)"


def _pairs(report: RetestReport) -> str:
    pairs = [f"{p['true']} -> {p['predicted']} ({p['count']})" for p in report.most_confused]
    return ", ".join(pairs) or "none"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _summary_table(summary: dict[str, Any], out_dir: Path) -> Table:
    test = summary["test"]
    low, high = test["accuracy_ci95"]
    table = Table(
        title="Best-trial retest on the test set", show_header=False, title_justify="left"
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "study / trial", f"{summary['study']} / {summary['trial']} ({summary['weights']})"
    )
    table.add_row("params", json.dumps(summary["params"]))
    if len(summary["ensemble"]) > 1:
        table.add_row("models averaged", "\n".join(summary["ensemble"]))
    table.add_row("validation acc", _pct(summary["val_acc"]))
    table.add_row("test acc", f"{test['accuracy']:.4f} (95% CI {low:.4f}-{high:.4f})")
    table.add_row(
        f"vs. {summary['baseline_test_acc']:.2%} baseline",
        f"{summary['test_acc_minus_baseline'] * 100:+.2f} points",
    )
    if "registry" in summary:
        table.add_row("registry", summary["registry"]["note"])
    table.add_row("report", str(out_dir / "report.md"))
    return table


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="best_eval")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(log):
        best_eval(cfg)


if __name__ == "__main__":
    main()
