"""What a training run records in its MLflow run: config, tags, metrics, weights, figures."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from data import DataSplits
from hpo.paths import PROJECT_ROOT
from hpo.tracking.figures import learning_curves, prediction_grid
from hpo.tracking.runs import TrackedRun, flatten
from hpo.tracking.settings import TrackingSettings
from hpo.training.loop import FitResult, inference_model
from hpo.training.precision import Precision
from hpo.urls import mask_urls

log = logging.getLogger(__name__)

# Artifact paths: best-eval (and anyone else) finds a run's pieces under these names.
CONFIG_ARTIFACT = "config.yaml"
CHECKPOINT_ARTIFACT = "checkpoints/best_state_dict.pt"
CHECKPOINT_META_ARTIFACT = "checkpoints/meta.json"
CURVES_ARTIFACT = "figures/learning_curves.png"
PREDICTIONS_ARTIFACT = "figures/val_predictions.png"
# How many validation images the prediction grid shows.
GRID_IMAGES = 32


def run_tags(
    device: torch.device, precision: Precision, overrides: Sequence[str]
) -> dict[str, str]:
    """Provenance of a run: code version, command-line overrides (a URL in them masked),
    device and the precision it resolved to (`trainer.precision=auto` says only what was
    asked), library versions."""
    return {
        "git_commit": git_commit(),
        "hydra_overrides": mask_urls(" ".join(overrides)) or "(none)",
        "device": str(device),
        "precision": precision.name,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def git_commit() -> str:
    """The checkout's commit (with `-dirty` for uncommitted changes), or `unknown`."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def log_run_start(
    run: TrackedRun,
    cfg: DictConfig,
    num_parameters: int,
    precision: Precision,
    *,
    not_params: Collection[str] = (),
) -> None:
    """Every resolved config value as a flat param, the config file, the parameter count.

    Top-level nodes named in `not_params` (the sweeper's trial link) stay in the config file
    but are not params: they are bookkeeping, not settings to compare runs by.
    """
    resolved = masked(cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)))
    settings = {k: v for k, v in resolved.items() if k not in not_params}
    run.log_params(flatten(settings))
    run.log_params({"model.num_parameters": num_parameters, "precision": precision.name})
    run.log_metrics({"model/params": num_parameters})
    run.log_text(OmegaConf.to_yaml(OmegaConf.create(resolved)), CONFIG_ARTIFACT)


def masked(config: Any) -> Any:
    """`config` (a plain container) with the password of every URL in it replaced by ***:
    a config holds URLs as plain strings, and params and artifacts are readable by all."""
    if isinstance(config, dict):
        return {k: masked(v) for k, v in config.items()}
    if isinstance(config, list):
        return [masked(v) for v in config]
    if isinstance(config, str):
        return mask_urls(config)
    return config


def log_epoch(run: TrackedRun, epoch: int, metrics: dict[str, float]) -> None:
    """Per-epoch metrics, stepped by epoch number."""
    run.log_metrics(metrics, step=epoch)


def log_run_end(
    run: TrackedRun,
    result: FitResult,
    *,
    meta: dict[str, Any],
    log_checkpoint: bool,
    figures: list[tuple[Any, str]],
) -> None:
    """Best-epoch summary metrics, the best weights with their metadata, and the figures."""
    run.log_metrics(
        {f"best/{k}": v for k, v in result.best_metrics.items()}, step=result.best_epoch
    )
    run.set_tags({"best_epoch": result.best_epoch, "stopped_early": result.stopped_early})
    if log_checkpoint:
        run.log_bytes(lambda path: torch.save(result.best_state, path), CHECKPOINT_ARTIFACT)
        run.log_text(json.dumps(meta, indent=2), CHECKPOINT_META_ARTIFACT)
    for figure, artifact in figures:
        run.log_figure(figure, artifact)


def log_training_end(
    run: TrackedRun,
    tracking: TrackingSettings,
    result: FitResult,
    model: nn.Module,
    splits: DataSplits,
    val_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_parameters: int,
    *,
    tta: bool = False,
    tta_translate: int = 0,
) -> None:
    """After `fit` (model holding the best weights): summary, checkpoint, figures.

    `tta` and `tta_translate` are the run's `trainer.tta*`: the prediction figure then shows
    what validation scored.
    """
    meta = {
        "best_epoch": result.best_epoch,
        "mean": splits.mean,
        "std": splits.std,
        "class_names": list(splits.class_names),
        "num_parameters": num_parameters,
    }
    figures = []
    if tracking.log_figures:
        first_batch = next(iter(val_batches))[0][:GRID_IMAGES]
        figures = run_figures(
            result,
            model,
            splits.val_images[:GRID_IMAGES],
            splits.val_labels[:GRID_IMAGES],
            first_batch,
            splits.class_names,
            tta=tta,
            tta_translate=tta_translate,
        )
    log_run_end(run, result, meta=meta, log_checkpoint=tracking.log_checkpoint, figures=figures)
    log.info("Recorded MLflow run %s in %s", run.run_id, tracking.uri)


def run_figures(
    result: FitResult,
    model: nn.Module,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    val_batch: torch.Tensor,
    class_names: Sequence[str],
    *,
    tta: bool = False,
    tta_translate: int = 0,
) -> list[tuple[Any, str]]:
    """Learning curves, and the best-epoch model's predictions on a few validation images.

    `val_batch` is the normalised model input for `val_images` (already on the device).
    With `tta` the predictions are averaged over the TTA views, as validation scored them.
    """
    curves = learning_curves(result.history, result.best_epoch)
    with torch.inference_mode():
        model.eval()
        evaluated = inference_model(model, None, tta, tta_translate)
        probs = evaluated(val_batch).float().softmax(dim=1).cpu()
    grid = prediction_grid(val_images, val_labels, probs, class_names)
    return [(curves, CURVES_ARTIFACT), (grid, PREDICTIONS_ARTIFACT)]


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a logged checkpoint safely (tensors only, no pickled code)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state_dict")
    return state
