from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import PreActResNet, count_parameters
from models.resnet import _PreActBlock


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(("depth", "blocks_per_stage"), [(8, 1), (14, 2), (20, 3)])
def test_valid_depths(
    depth: int, blocks_per_stage: int, memory_format: torch.memory_format
) -> None:
    model = PreActResNet(depth=depth, width=4).to(memory_format=memory_format)
    blocks = [m for m in model.modules() if isinstance(m, _PreActBlock)]
    assert len(blocks) == 3 * blocks_per_stage
    x = torch.randn(2, 1, 28, 28).to(memory_format=memory_format)
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("depth", [2, 7, 9, 10, 13, 15, 21])
def test_invalid_depths_list_the_valid_ones(depth: int) -> None:
    with pytest.raises(ValueError, match=rf"model.depth={depth} .* 6n\+2 .*\(8, 14, 20, 26"):
        PreActResNet(depth=depth)


def test_stages_halve_the_size_twice_and_double_the_width() -> None:
    model = PreActResNet(depth=14, width=4)
    features = model.blocks(model.stem(torch.randn(2, 1, 28, 28)))
    assert features.shape == (2, 16, 7, 7)  # 28 -> 28 -> 14 -> 7, width 4 -> 8 -> 16
    # Projection shortcuts only where shape changes: the first block of stages 2 and 3.
    shortcuts = [b.shortcut for b in model.modules() if isinstance(b, _PreActBlock)]
    assert [s is not None for s in shortcuts] == [False, False, True, False, True, False]


def test_default_parameter_count_matches_the_architecture() -> None:
    def block(c_in: int, c_out: int) -> int:
        shortcut = c_in * c_out if c_in != c_out else 0
        return 2 * c_in + c_in * c_out * 9 + 2 * c_out + c_out * c_out * 9 + shortcut

    stem = 1 * 16 * 9
    head = 2 * 64 + 64 * 10 + 10  # final BN + classifier
    expected = stem + block(16, 16) + block(16, 32) + block(32, 64) + head
    assert count_parameters(PreActResNet()) == expected == 77_562


def test_convolutions_use_kaiming_fan_out_init() -> None:
    torch.manual_seed(0)
    model = PreActResNet(width=32)
    block = model.blocks[2]  # 128 -> 128 channels: 147k weights, a tight std estimate
    assert isinstance(block, _PreActBlock)
    conv = block.conv2
    expected_std = math.sqrt(2.0 / (conv.out_channels * 9))
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d)), (
        "every conv feeds a BatchNorm, so none should carry a bias"
    )


def test_dropout_before_the_classifier() -> None:
    assert PreActResNet(dropout=0.3).dropout.p == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"width": 0}, ValueError, "model.width=0"),
        ({"dropout": 1.0}, ValueError, r"model.dropout=1.0 .* \[0, 1\)"),
        ({"depth": 0}, ValueError, "model.depth=0"),
        ({"depth": "8"}, TypeError, "model.depth='8' must be an integer"),
        ({"num_classes": 1}, ValueError, "model.num_classes=1"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        PreActResNet(**kwargs)  # type: ignore[arg-type]
