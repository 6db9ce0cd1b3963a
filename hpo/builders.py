"""Build the pieces of a training from a composed config (shared by train.py and best-eval)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LRScheduler

from data import DatasetFileError, DataSplits, TensorBatchLoader
from hpo.config_checks import ConfigError
from hpo.errors import DataError
from hpo.training.loop import TrainSettings
from hpo.training.param_groups import parameter_groups
from hpo.training.precision import Precision

log = logging.getLogger(__name__)

# Training images a whitening first layer is computed from: 5000 28x28 images give 3.6M 2x2
# patches, plenty for a 4x4 covariance, in well under a second.
WHITENING_IMAGES = 5000


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate(node)`, with a target that rejects its arguments reported as a config
    error naming the group's target (Hydra's own exception carries a traceback)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        raise ConfigError(f"invalid config: {exc}") from exc


@contextmanager
def dataset_files() -> Iterator[None]:
    """Report a missing or corrupt dataset file (raised by the plain-PyTorch `data`
    package, which knows nothing of `hpo`) as the project's `DataError`."""
    try:
        yield
    except DatasetFileError as exc:
        raise DataError(str(exc)) from exc


def splits(cfg: DictConfig) -> DataSplits:
    """The train/validation splits of `cfg.data`, loaded and verified."""
    with dataset_files():
        return build(cfg.data).setup()


def memory_format(cfg: DictConfig) -> torch.memory_format:
    """channels_last is ~25% faster for these convnets on CPU (see bench/)."""
    return torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format


def loaders(
    cfg: DictConfig, splits: DataSplits, device: torch.device
) -> tuple[TensorBatchLoader, TensorBatchLoader]:
    """Shuffled, augmented train batches and plain validation batches on `device`."""
    train = train_loader(cfg, splits, device)
    val = splits.val_loader(
        batch_size=cfg.trainer.eval_batch_size,
        device=device,
        channels_last=cfg.trainer.channels_last,
    )
    return train, val


def train_loader(cfg: DictConfig, splits: DataSplits, device: torch.device) -> TensorBatchLoader:
    """Shuffled, augmented batches of `splits`' train split on `device`, as `cfg.trainer` and
    `cfg.augmentation` say: a trial's, or a final retrain's over `splits.merged()`."""
    return splits.train_loader(
        batch_size=cfg.trainer.batch_size,
        seed=cfg.seed,
        device=device,
        augment=build(cfg.augmentation),
        channels_last=cfg.trainer.channels_last,
    )


def model(
    cfg: DictConfig, device: torch.device, splits: DataSplits | None = None
) -> torch.nn.Module:
    """The network of `cfg.model` on `device`, in the configured memory format.

    A net with a data-dependent first layer (`init_whitening` and `whiten` true, as
    models.AirbenchNet) gets it from a seeded sample of `splits`' training images first.
    """
    net = build(cfg.model)
    if getattr(net, "whiten", False) and hasattr(net, "init_whitening"):
        if splits is None:
            log.warning(
                "%s has whiten=true but was built without training images: its whitening "
                "layer keeps its data-free default until a checkpoint is loaded",
                cfg.model._target_,
            )
        else:
            net.init_whitening(whitening_images(splits, cfg.seed))
    return net.to(device, memory_format=memory_format(cfg))


def whitening_images(splits: DataSplits, seed: int, count: int = WHITENING_IMAGES) -> torch.Tensor:
    """Up to `count` training images drawn with `seed`, float (n, C, H, W), normalised as
    the training loader normalises its batches (without augmentation)."""
    # A generator of its own: the global RNG, which just drew the weights, stays untouched.
    order = torch.randperm(len(splits.train_labels), generator=torch.Generator().manual_seed(seed))
    pick = order[:count]
    # The loader itself converts them, so the whitening sees exactly what training sees.
    sample = TensorBatchLoader(
        splits.train_images[pick],
        splits.train_labels[pick],
        batch_size=len(pick),
        mean=splits.mean,
        std=splits.std,
        shuffle=False,
        channels_last=False,
    )
    images, _ = next(iter(sample))
    return images


def optimization(
    cfg: DictConfig,
    net: torch.nn.Module,
    steps_per_epoch: int,
    precision: Precision,
    epochs: int | None = None,
) -> tuple[torch.optim.Optimizer, LRScheduler, TrainSettings]:
    """Optimizer, per-batch schedule and loop settings for `epochs` (default: the config's)."""
    epochs = epochs or cfg.trainer.epochs
    params = parameter_groups(
        net,
        no_decay=cfg.trainer.no_decay_norm_bias,
        norm_bias_lr_scale=float(cfg.trainer.norm_bias_lr_scale),
        lr=float(cfg.optimizer.lr),
        weight_decay=float(cfg.optimizer.get("weight_decay", 0.0)),
    )
    optimizer = build(cfg.optimizer)(params)
    scheduler = build(cfg.scheduler)(optimizer, total_steps=epochs * steps_per_epoch)
    settings = TrainSettings(
        epochs=epochs,
        label_smoothing=cfg.trainer.label_smoothing,
        patience=cfg.trainer.patience,
        grad_clip=cfg.trainer.grad_clip,
        progress=cfg.trainer.progress,
        precision=precision,
        ema=cfg.trainer.ema,
        ema_warmup_epochs=cfg.trainer.ema_warmup_epochs,
        tta=cfg.trainer.tta,
        tta_translate=cfg.trainer.tta_translate,
    )
    return optimizer, scheduler, settings


def objective_values(
    objectives: tuple[str, ...], best_metrics: dict[str, float], num_parameters: int
) -> float | list[float]:
    """What the run returns to a sweeper: one float, or a list for several objectives."""
    values: dict[str, Any] = {**best_metrics, "model/params": float(num_parameters)}
    chosen = [float(values[name]) for name in objectives]
    return chosen[0] if len(chosen) == 1 else chosen
