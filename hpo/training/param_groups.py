"""Optimizer parameter groups: weight decay for weights, none for normalisation layers and biases.

Decaying a BatchNorm/LayerNorm scale or a bias towards zero does not regularise what the
network computes (a norm layer's output scale is undone by the next norm, a bias does not
scale with the input); it only fights the optimizer. The usual split exempts them.
"""

from __future__ import annotations

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
