"""Build the pieces of a training from a composed config (shared by train.py and best-eval)."""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LRScheduler

from data import DataSplits, TensorBatchLoader
from hpo.training.loop import TrainSettings
from hpo.training.precision import Precision


def memory_format(cfg: DictConfig) -> torch.memory_format:
    """channels_last is ~25% faster for these convnets on CPU (see bench/)."""
    return torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format


def loaders(
    cfg: DictConfig, splits: DataSplits, device: torch.device
) -> tuple[TensorBatchLoader, TensorBatchLoader]:
    """Shuffled, augmented train batches and plain validation batches on `device`."""
    train = splits.train_loader(
        batch_size=cfg.trainer.batch_size,
        seed=cfg.seed,
        device=device,
        augment=instantiate(cfg.augmentation),
        channels_last=cfg.trainer.channels_last,
    )
    val = splits.val_loader(
        batch_size=cfg.trainer.eval_batch_size,
        device=device,
        channels_last=cfg.trainer.channels_last,
    )
    return train, val


def model(cfg: DictConfig, device: torch.device) -> torch.nn.Module:
    """The network of `cfg.model` on `device`, in the configured memory format."""
    return instantiate(cfg.model).to(device, memory_format=memory_format(cfg))


def optimization(
    cfg: DictConfig,
    net: torch.nn.Module,
    steps_per_epoch: int,
    precision: Precision,
    epochs: int | None = None,
) -> tuple[torch.optim.Optimizer, LRScheduler, TrainSettings]:
    """Optimizer, per-batch schedule and loop settings for `epochs` (default: the config's)."""
    epochs = epochs or cfg.trainer.epochs
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=epochs * steps_per_epoch)
    settings = TrainSettings(
        epochs=epochs,
        label_smoothing=cfg.trainer.label_smoothing,
        patience=cfg.trainer.patience,
        grad_clip=cfg.trainer.grad_clip,
        progress=cfg.trainer.progress,
        precision=precision,
    )
    return optimizer, scheduler, settings


def objective_values(
    objectives: tuple[str, ...], best_metrics: dict[str, float], num_parameters: int
) -> float | list[float]:
    """What the run returns to a sweeper: one float, or a list for several objectives."""
    values: dict[str, Any] = {**best_metrics, "model/params": float(num_parameters)}
    chosen = [float(values[name]) for name in objectives]
    return chosen[0] if len(chosen) == 1 else chosen
