from __future__ import annotations

import pytest
import torch
from torch import nn

from models import count_parameters


def _frozen_first_layer() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[0].requires_grad_(False)
    return model


def _shared_weights() -> nn.Module:
    shared = nn.Linear(4, 4)
    return nn.Sequential(shared, nn.ReLU(), shared)


@pytest.mark.parametrize(
    ("build", "trainable_only", "expected"),
    [
        (lambda: nn.Linear(3, 2), True, 3 * 2 + 2),
        (lambda: nn.Linear(3, 2, bias=False), True, 6),
        (lambda: nn.Conv2d(1, 4, 3), True, 1 * 4 * 9 + 4),
        # BatchNorm running statistics are buffers, not parameters.
        (lambda: nn.BatchNorm1d(4), True, 8),
        (lambda: nn.ReLU(), True, 0),
        (_frozen_first_layer, True, 2 + 1),
        (_frozen_first_layer, False, 8 + 3),
        # A module reused twice holds one set of weights.
        (_shared_weights, True, 4 * 4 + 4),
    ],
)
def test_count_parameters(build, trainable_only: bool, expected: int) -> None:
    assert count_parameters(build(), trainable_only=trainable_only) == expected


def test_count_parameters_rejects_non_module() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module, got OrderedDict"):
        count_parameters(nn.Linear(2, 2).state_dict())  # type: ignore[arg-type]


def test_count_parameters_rejects_uninitialised_lazy_module() -> None:
    lazy = nn.LazyLinear(3)
    with pytest.raises(ValueError, match="run one forward pass"):
        count_parameters(lazy)
    lazy(torch.zeros(1, 5))
    assert count_parameters(lazy) == 5 * 3 + 3
