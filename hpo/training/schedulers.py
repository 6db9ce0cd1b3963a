"""Learning-rate schedules stepped once per batch, built from `conf/scheduler/`.

Each factory takes the optimizer and the total number of optimizer steps, which only the
trainer knows (epochs x batches), so the YAML holds only the shape of the schedule.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LinearLR, LRScheduler, OneCycleLR, SequentialLR


def constant(optimizer: torch.optim.Optimizer, *, total_steps: int) -> LRScheduler:
    """Keep the optimizer's learning rate unchanged."""
    _check_steps(total_steps)
    return LambdaLR(optimizer, lambda step: 1.0)


def cosine(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.01,
) -> LRScheduler:
    """Linear warm-up over `warmup_fraction` of the steps, then cosine decay.

    The rate ends at `min_lr_ratio` times the optimizer's learning rate.
    """
    _check_steps(total_steps)
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"scheduler.warmup_fraction={warmup_fraction} must be in [0, 1)")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"scheduler.min_lr_ratio={min_lr_ratio} must be in [0, 1]")
    warmup = int(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def onecycle(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    max_lr: float,
    pct_start: float = 0.25,
) -> LRScheduler:
    """Smith's one-cycle policy peaking at `max_lr` (the optimizer's lr by default; a parameter
    group with its own lr peaks at the same multiple of it).

    Very short runs (a few batches, as in smoke tests) get at least two steps per phase,
    which torch's OneCycleLR needs; under four steps in all the rate stays constant.
    """
    _check_steps(total_steps)
    if not 0.0 < pct_start < 1.0:
        raise ValueError(f"scheduler.pct_start={pct_start} must be in (0, 1)")
    if total_steps < 4:
        return constant(optimizer, total_steps=total_steps)
    pct_start = min(max(pct_start, 2 / total_steps), 1 - 2 / total_steps)
    # A group with its own lr (trainer.norm_bias_lr_scale) keeps its ratio to the optimizer's:
    # a single max_lr would set every group to the same peak.
    base = optimizer.defaults["lr"]
    peaks = [max_lr * group["lr"] / base for group in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps, pct_start=pct_start)


def linear_warmup(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_fraction: float = 0.1,
    start_factor: float = 0.1,
) -> LRScheduler:
    """Linear warm-up from `start_factor` times the optimizer's lr to that lr over
    `warmup_fraction` of the steps, then linear decay to 0 after the last step.

    The last step runs at lr / (decay steps): every step trains, none at exactly 0. Built
    from torch's LinearLR (one per phase) joined by SequentialLR.
    """
    _check_steps(total_steps)
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"scheduler.warmup_fraction={warmup_fraction} must be in [0, 1)")
    if not 0.0 < start_factor <= 1.0:
        raise ValueError(f"scheduler.start_factor={start_factor} must be in (0, 1]")
    warmup = min(int(total_steps * warmup_fraction), total_steps - 1)
    decay = LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=total_steps - warmup)
    if warmup == 0:
        return decay
    rise = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [rise, decay], milestones=[warmup])


def _check_steps(total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"a schedule needs at least one step, got total_steps={total_steps}")
