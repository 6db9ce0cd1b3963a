from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import CNN, count_parameters


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("hidden", [0, 16])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("double_conv", [False, True])
@pytest.mark.parametrize("width_growth", [1.0, 1.5])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_output_shape_over_config_grid(
    depth: int,
    width_growth: float,
    double_conv: bool,
    batch_norm: bool,
    hidden: int,
    memory_format: torch.memory_format,
) -> None:
    model = CNN(
        depth=depth,
        width=4,
        width_growth=width_growth,
        double_conv=double_conv,
        batch_norm=batch_norm,
        hidden=hidden,
    ).to(memory_format=memory_format)
    x = torch.randn(3, 1, 28, 28).to(memory_format=memory_format)
    out = model(x)
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("image_size", "depth"), [(28, 4), (28, 3), (32, 5), (13, 3), (7, 2), (5, 2), (2, 1)]
)
@pytest.mark.parametrize("hidden", [0, 8])
def test_analytic_flatten_size_agrees_with_a_forward_pass(
    image_size: int, depth: int, hidden: int
) -> None:
    # Non-28 sizes and odd sizes exercise the floor in every pool.
    model = CNN(
        in_channels=3, num_classes=5, image_size=image_size, depth=depth, width=4, hidden=hidden
    )
    out = model(torch.randn(2, 3, image_size, image_size))
    assert out.shape == (2, 5)


@pytest.mark.parametrize(
    ("width", "width_growth", "depth", "expected"),
    [
        (32, 2.0, 3, [32, 64, 128]),
        (16, 1.0, 4, [16, 16, 16, 16]),
        (16, 0.5, 3, [16, 8, 4]),
        (10, 1.5, 3, [10, 15, 22]),  # 22.5 rounds half to even, as Python's round() does
        (5, 1.3, 2, [5, 6]),
    ],
)
def test_block_channels(width: int, width_growth: float, depth: int, expected: list[int]) -> None:
    model = CNN(width=width, width_growth=width_growth, depth=depth)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == expected
    assert model.channels == expected


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("double_conv", [False, True])
def test_block_layout(double_conv: bool, batch_norm: bool) -> None:
    model = CNN(depth=2, width=8, double_conv=double_conv, batch_norm=batch_norm)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.features.modules() if isinstance(m, nn.BatchNorm2d)]
    pools = [m for m in model.features.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 2 * (2 if double_conv else 1)
    assert len(bns) == (len(convs) if batch_norm else 0)
    assert len(pools) == 2
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    # A conv feeding BN has no bias: BN's mean subtraction would cancel it.
    assert all((c.bias is None) == batch_norm for c in convs)


def test_default_parameter_count_matches_the_architecture() -> None:
    conv1 = 1 * 32 * 9 + 2 * 32  # conv without bias + BN scale/shift
    conv2 = 32 * 64 * 9 + 2 * 64
    dense = 64 * 7 * 7 * 128 + 128
    classifier = 128 * 10 + 10
    assert count_parameters(CNN()) == conv1 + conv2 + dense + classifier == 421_738


def test_global_average_pool_head_when_hidden_is_zero() -> None:
    model = CNN(depth=2, width=8, hidden=0)
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(16, 10)]
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.head.modules())


@pytest.mark.parametrize("hidden", [0, 32])
def test_head_dropout_uses_the_configured_probability(hidden: int) -> None:
    model = CNN(dropout=0.4, hidden=hidden)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts
    assert all(d.p == pytest.approx(0.4) for d in dropouts)


@pytest.mark.parametrize(
    ("image_size", "depth", "chain", "max_depth"),
    [
        (28, 5, "28->14->7->3->1", 4),
        (32, 6, "32->16->8->4->2->1", 5),
        (7, 3, "7->3->1", 2),
        (13, 4, "13->6->3->1", 3),
        (2, 2, "2->1", 1),
    ],
)
def test_too_deep_for_the_image_size(
    image_size: int, depth: int, chain: str, max_depth: int
) -> None:
    expected = (
        f"model.depth={depth} is too deep for {image_size}x{image_size} inputs: each block halves "
        f"the size ({chain}), so at most {max_depth} blocks fit; use model.depth<={max_depth}"
    )
    with pytest.raises(ValueError) as info:
        CNN(image_size=image_size, depth=depth, width=2)
    assert str(info.value) == expected
    # The suggested fix must itself be accepted.
    CNN(image_size=image_size, depth=max_depth, width=2)


def test_too_deep_when_no_block_fits() -> None:
    with pytest.raises(ValueError, match=r"at most 0 blocks fit; use data.image_size>=2"):
        CNN(image_size=1, depth=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"depth": 0}, ValueError, "model.depth=0 .* >= 1"),
        ({"width": 0}, ValueError, "model.width=0 .* >= 1"),
        ({"hidden": -1}, ValueError, "model.hidden=-1 .* >= 0"),
        ({"width_growth": 0.0}, ValueError, "model.width_growth=0.0 .* > 0"),
        ({"width_growth": -2.0}, ValueError, "model.width_growth=-2.0 .* > 0"),
        ({"width_growth": math.inf}, ValueError, "model.width_growth=inf .* finite"),
        ({"dropout": 1.0}, ValueError, r"model.dropout=1.0 .* \[0, 1\)"),
        ({"dropout": -0.1}, ValueError, r"model.dropout=-0.1 .* \[0, 1\)"),
        ({"in_channels": 0}, ValueError, "model.in_channels=0 .* use data.in_channels>=1"),
        ({"num_classes": 1}, ValueError, "model.num_classes=1 .* >= 2; use data.num_classes>=2"),
        ({"image_size": 0}, ValueError, "model.image_size=0 .* data.image_size"),
        ({"width": 1, "width_growth": 0.1}, ValueError, r"block channels \[1, 0\]"),
        ({"depth": 2.0}, TypeError, "model.depth=2.0 must be an integer \\(no decimal point"),
        ({"depth": True}, TypeError, "model.depth=True must be an integer \\(no decimal point"),
        ({"width": "32"}, TypeError, "model.width='32' must be an integer \\(no decimal point"),
        ({"width_growth": "2"}, TypeError, "model.width_growth='2' must be a number"),
        ({"dropout": None}, TypeError, "model.dropout=None must be a number"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        CNN(**kwargs)  # type: ignore[arg-type]


def test_constructor_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        CNN(1, 10)  # type: ignore[call-arg]


def test_extra_repr_summarises_the_configuration() -> None:
    text = repr(CNN(depth=3, width=8, hidden=0, double_conv=True))
    assert "channels=[8, 16, 32], double_conv=True, batch_norm=True, head=global_avg_pool" in text
