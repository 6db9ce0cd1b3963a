"""Optimizer parameter groups: weight decay for weights, none for normalisation layers and
biases; optionally a larger learning rate for the norm layers' biases.

Decaying a BatchNorm/LayerNorm scale or a bias towards zero does not regularise what the
network computes (a norm layer's output scale is undone by the next norm, a bias does not
scale with the input); it only fights the optimizer. The usual split exempts them.

airbench trains BatchNorm biases at 64 times the learning rate of the weights (with frozen
BatchNorm scales): a bias is one number per channel, moved by a gradient averaged over every
pixel of the batch, so it tolerates far larger steps than a conv weight; airbench uses it in
its short CIFAR-10 runs. It is a setting here, off by default: on the
accuracy recipe it moved validation by +0.10 points, within the noise (bench/README.md).
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

# Layers whose weight is a per-channel scale (public torch classes; lazy ones become these).
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)


def no_decay_norm_bias(model: nn.Module) -> list[dict[str, Any]]:
    """Two optimizer parameter groups covering every parameter of `model` exactly once.

    The first holds the other weights and takes the optimizer's configured `weight_decay`;
    the second holds the weights of `NORM_LAYERS` and every bias, with `weight_decay=0`.
    A group left empty is dropped (a model without norm layers or biases gets one group).
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()  # a parameter shared by two modules goes in once
    for module in model.modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if is_norm or name == "bias" else decay).append(param)
    groups: list[dict[str, Any]] = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def parameter_groups(
    model: nn.Module,
    *,
    no_decay: bool,
    norm_bias_lr_scale: float,
    lr: float,
    weight_decay: float,
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups for the trainer's settings, every parameter once.

    Args:
        model: the network.
        no_decay: split off the norm weights and biases with weight_decay=0
            (`no_decay_norm_bias`); otherwise every weight takes the optimizer's decay.
        norm_bias_lr_scale: the learning rate of `NORM_LAYERS`' biases as a multiple of `lr`.
            At 1 the groups are exactly those above. Otherwise those biases get a group of
            their own, last, at `lr * norm_bias_lr_scale`, with weight decay 0 under
            `no_decay` and else `weight_decay / norm_bias_lr_scale` (airbench's rule: the
            decay per step, which scales with lr * weight_decay, stays what it was).
        lr, weight_decay: the optimizer's configured values.

    Raises:
        ValueError: if `norm_bias_lr_scale` is not a finite number > 0.
    """
    if not (math.isfinite(norm_bias_lr_scale) and norm_bias_lr_scale > 0):
        raise ValueError(
            f"trainer.norm_bias_lr_scale={norm_bias_lr_scale} must be a finite number > 0 "
            "(1 = the optimizer's learning rate; airbench uses 64)"
        )
    groups = no_decay_norm_bias(model) if no_decay else [{"params": list(model.parameters())}]
    if norm_bias_lr_scale == 1.0:
        return groups
    biases = {
        id(module.bias): module.bias
        for module in model.modules()
        if isinstance(module, NORM_LAYERS) and isinstance(module.bias, nn.Parameter)
    }
    for group in groups:
        group["params"] = [p for p in group["params"] if id(p) not in biases]
    decay = 0.0 if no_decay else weight_decay / norm_bias_lr_scale
    scaled = {"params": list(biases.values()), "lr": lr * norm_bias_lr_scale, "weight_decay": decay}
    return [group for group in [*groups, scaled] if group["params"]]
