"""The training loop: epochs over in-memory batches, validation, best-epoch weights.

Plain PyTorch: it knows nothing of Hydra, Optuna or MLflow. Whoever calls `fit` passes an
`on_epoch_end` callback to log metrics or report to a pruner; the callback may raise to
stop training (a pruned trial does exactly that). It is the one training loop: a trial
fits with validation batches, best-eval's final retrain without (keeping the final weights).

With `TrainSettings.ema` set, an exponential moving average of the weights (and of the
BatchNorm statistics) follows every optimizer step, and it is what gets validated and
kept as the best epoch's weights; with `tta`, validation averages each image's logits with
those of its horizontal flip.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from hpo.errors import RunError
from hpo.training.objectives import is_improvement
from hpo.training.precision import FP32, Precision
from models.flip_tta import FlipTTA

log = logging.getLogger(__name__)

EpochMetrics = dict[str, float]
EpochCallback = Callable[[int, EpochMetrics], None]
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]

# How often (in batches) the running loss is checked for NaN/inf. Checking reads a value
# back from the device, so every batch would stall a GPU; a NaN never recovers anyway.
_FINITE_CHECK_EVERY = 25


class TrainingDivergedError(RunError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    """What a finished `fit` hands back.

    `best_*` describe the kept weights: the best validated epoch's, or without validation
    the final epoch's.
    """

    history: list[EpochMetrics]
    best_epoch: int
    best_metrics: EpochMetrics
    best_state: dict[str, torch.Tensor] = field(repr=False)
    stopped_early: bool = False


@dataclass(frozen=True)
class TrainSettings:
    """Loop settings from `conf/trainer/`, minus the ones used to build the loaders."""

    epochs: int
    label_smoothing: float = 0.0
    patience: int | None = None
    grad_clip: float | None = None
    progress: bool = True
    # Autocast for forward passes and losses (training and evaluation); fp32 by default.
    precision: Precision = FP32
    # Decay of the exponential moving average of the weights, per optimizer step (None: off).
    ema: float | None = None
    # Epochs trained before the average starts from the weights of that moment.
    ema_warmup_epochs: int = 0
    # Validate on the mean logits of each image and its horizontal flip...
    tta: bool = False
    # ... and of the image shifted by this many pixels both ways, each with its flip.
    tta_translate: int = 0


def fit(
    model: nn.Module,
    train_batches: Batches,
    val_batches: Batches | None,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    settings: TrainSettings,
    monitor: str | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> FitResult:
    """Train for `settings.epochs` epochs, keeping the weights of the best epoch.

    Trials and best-eval's final retrain both train through here, so they share one gradient
    scaler (made from `settings.precision`), one autocast and one weight average.

    Without validation (`val_batches=None`, e.g. a final retrain on all training images)
    every epoch is trained, the epochs report train metrics only, and the final weights are
    kept (the average's under `settings.ema`), so `best_epoch` is the last one. Early
    stopping and a monitored metric need validated metrics: `settings.patience` or
    `monitor` without validation is refused rather than silently ignored.

    Args:
        model: the network, already on the loaders' device.
        train_batches: re-iterable; each pass is one epoch (a new shuffle).
        val_batches: re-iterable validation batches, never augmented; None: no validation.
        optimizer: built over `model.parameters()`.
        scheduler: stepped after every optimizer step, or None.
        settings: epochs, label smoothing, patience, gradient clipping, progress bar, weight
            average (`ema`: validated and kept instead of the live weights), flip TTA.
        monitor: the epoch metric that picks the best epoch (e.g. `val/loss`); None:
            `val/acc`. Only with validation.
        on_epoch_end: called with (epoch, metrics) after each epoch; may raise to stop.

    Raises:
        ValueError: `settings.patience` or `monitor` set while `val_batches` is None.
        TrainingDivergedError: when the training loss becomes NaN or infinite.
    """
    monitor = _monitored(val_batches, settings, monitor)
    history: list[EpochMetrics] = []
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, since_best = 0, 0
    scaler = settings.precision.grad_scaler()  # one for the whole fit: it adapts its scale
    ema: AveragedModel | None = None
    for epoch in range(1, settings.epochs + 1):
        ema = _ema_for_epoch(model, settings, epoch, ema)
        metrics = _run_epoch(
            model,
            train_batches,
            val_batches,
            optimizer=optimizer,
            scheduler=scheduler,
            settings=settings,
            epoch=epoch,
            scaler=scaler,
            ema=ema,
        )
        history.append(metrics)
        log.info("epoch %d/%d %s", epoch, settings.epochs, _format(metrics))
        best = history[best_epoch - 1] if best_epoch else None
        if _keeps(metrics, best, monitor, last=epoch == settings.epochs):
            best_epoch, since_best = epoch, 0
            # The bare network's state_dict (the average's own, under EMA): same keys either way.
            kept = model if ema is None else ema.module
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in kept.state_dict().items()}
        else:
            since_best += 1
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
        if settings.patience is not None and since_best >= settings.patience:
            log.info("no %s improvement for %d epochs: stopping early", monitor, since_best)
            assert best_epoch > 0
            return FitResult(history, best_epoch, history[best_epoch - 1], best_state, True)
    assert best_epoch > 0, "epochs >= 1 is validated before training"
    return FitResult(history, best_epoch, history[best_epoch - 1], best_state)


def _monitored(
    val_batches: Batches | None, settings: TrainSettings, monitor: str | None
) -> str | None:
    """The metric that picks the best epoch; None without validation (the last is kept)."""
    if val_batches is not None:
        return monitor or "val/acc"
    if settings.patience is not None:
        raise ValueError(
            f"patience={settings.patience} needs validation batches to stop on; set patience "
            f"to None for a run without validation (it trains all {settings.epochs} epochs)"
        )
    if monitor is not None:
        raise ValueError(
            f"monitor={monitor!r} needs validation batches; without them the final epoch's "
            "weights are kept, so leave monitor unset"
        )
    return None


def _keeps(
    metrics: EpochMetrics, best: EpochMetrics | None, monitor: str | None, last: bool
) -> bool:
    """Whether this epoch's weights replace the kept ones: an improvement of `monitor`, or
    (without validation) the final epoch."""
    if monitor is None:
        return last
    return is_improvement(metrics[monitor], None if best is None else best[monitor], monitor)


def _ema_for_epoch(
    model: nn.Module, settings: TrainSettings, epoch: int, ema: AveragedModel | None
) -> AveragedModel | None:
    """The weight average to update during `epoch`: `ema` once started, else a new one when
    `epoch` is the first after `settings.ema_warmup_epochs`, else None (off, or warming up).

    The average starts as a copy of the current weights (torch's AveragedModel, weights and
    buffers), so every later `update_parameters(model)` is one EMA step
    `avg = decay * avg + (1 - decay) * weights`.
    """
    if ema is not None or settings.ema is None or epoch <= settings.ema_warmup_epochs:
        return ema
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema), use_buffers=True)
    ema.update_parameters(model)  # counts the copy as the first average: no copy at step one
    return ema


def inference_model(
    model: nn.Module, ema: AveragedModel | None, tta: bool, translate: int = 0
) -> nn.Module:
    """What validation runs: the average's network if there is one, averaged over its TTA
    views if `tta` (the flip, and with `translate` the shifted images)."""
    net = model if ema is None else ema.module
    return FlipTTA(net, translate) if tta else net


def _run_epoch(
    model: nn.Module,
    train_batches: Batches,
    val_batches: Batches | None,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    settings: TrainSettings,
    epoch: int,
    scaler: torch.amp.GradScaler | None,
    ema: AveragedModel | None,
) -> EpochMetrics:
    start = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    train_loss, train_acc, seen = train_one_epoch(
        model,
        train_batches,
        optimizer=optimizer,
        scheduler=scheduler,
        settings=settings,
        epoch=epoch,
        scaler=scaler,
        ema=ema,
    )
    train_seconds = time.perf_counter() - start
    metrics: EpochMetrics = {"train/loss": train_loss, "train/acc": train_acc}
    if val_batches is not None:
        evaluated = inference_model(model, ema, settings.tta, settings.tta_translate)
        metrics["val/loss"], metrics["val/acc"] = evaluate(
            evaluated, val_batches, settings.precision
        )
    metrics["lr"] = lr
    metrics["epoch_seconds"] = time.perf_counter() - start
    metrics["images_per_second"] = seen / train_seconds
    return metrics


def train_one_epoch(
    model: nn.Module,
    batches: Batches,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    settings: TrainSettings,
    epoch: int,
    scaler: torch.amp.GradScaler | None,
    ema: AveragedModel | None,
) -> tuple[float, float, int]:
    """One pass over `batches`; returns (mean loss, accuracy, images seen).

    The forward pass and the loss run under `settings.precision`'s autocast; backward and
    the optimizer step outside it. `scaler` (`settings.precision.grad_scaler()`: fp16 only)
    scales the loss against underflow. `ema`, when not None, takes one step towards the
    weights after each optimizer step. Every argument after `batches` is keyword-only and
    required, so a forgotten scaler or average cannot pass unnoticed; `fit` supplies them.
    """
    model.train()
    # Sums stay on the device; reading them every batch would force a device sync.
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    seen = step = 0
    total = len(batches) if isinstance(batches, Sized) else None
    with _Progress(settings.progress, f"epoch {epoch}", total) as advance:
        for step, (x, y) in enumerate(batches, start=1):
            with settings.precision.autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            _step(model, loss, optimizer, settings.grad_clip, scaler)
            if ema is not None:
                ema.update_parameters(model)  # fp32 weights, outside autocast
            if scheduler is not None:
                scheduler.step()
            if loss_sum.device != loss.device:
                loss_sum, correct = loss_sum.to(loss.device), correct.to(loss.device)
            loss_sum += loss.detach() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
            seen += y.shape[0]
            if step % _FINITE_CHECK_EVERY == 0:
                _check_finite(loss_sum, epoch, step)
            advance()
    if seen == 0:
        raise ValueError("the training set yielded no batches; check data.train_subset")
    _check_finite(loss_sum, epoch, step)
    return loss_sum.item() / seen, correct.item() / seen, seen


def _step(
    model: nn.Module,
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    grad_clip: float | None,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Backward and optimizer step, outside autocast (fp32 weights and gradients)."""
    if scaler is None:
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()


@torch.inference_mode()
def predict(
    model: nn.Module, batches: Batches, precision: Precision = FP32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (fp32) and labels for every batch, concatenated on the CPU."""
    model.eval()
    outputs, labels = [], []
    for x, y in batches:
        with precision.autocast():
            logits = model(x)
        outputs.append(logits.float().cpu())
        labels.append(y.cpu())
    return torch.cat(outputs), torch.cat(labels)


def evaluate(
    model: nn.Module, batches: Batches, precision: Precision = FP32
) -> tuple[float, float]:
    """Mean cross-entropy (no label smoothing) and accuracy over `batches`."""
    logits, labels = predict(model, batches, precision)
    loss = F.cross_entropy(logits, labels).item()
    acc = (logits.argmax(1) == labels).double().mean().item()
    return loss, acc


def _check_finite(loss_sum: torch.Tensor, epoch: int, step: int) -> None:
    value = loss_sum.item()
    if not math.isfinite(value):
        raise TrainingDivergedError(
            f"training diverged: train/loss became {value} in epoch {epoch} by batch {step}. "
            "Lower optimizer.lr, set trainer.grad_clip (e.g. 1.0), or use a scheduler with warm-up."
        )


class _Progress:
    """A per-batch progress bar on a terminal; a no-op elsewhere (logs, CI, sweeps)."""

    def __init__(self, enabled: bool, description: str, total: int | None) -> None:
        self._bar: Progress | None = None
        if enabled and sys.stderr.isatty():
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
        self._description, self._total = description, total

    def __enter__(self) -> Callable[[], None]:
        if self._bar is None:
            return lambda: None
        self._bar.start()
        task = self._bar.add_task(self._description, total=self._total)
        bar = self._bar
        return lambda: bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _format(metrics: EpochMetrics) -> str:
    keys = ("train/loss", "train/acc", "val/loss", "val/acc", "epoch_seconds", "images_per_second")
    return " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
