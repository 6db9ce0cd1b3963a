from __future__ import annotations

import math
import re

import pytest
import torch

from models import CNN, RawPixelClassifier, SeedCNN

MEAN, STD = 0.2860, 0.3530


def _raw_pixels(*shape: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0)).float()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_equals_manual_normalisation_then_model(memory_format: torch.memory_format) -> None:
    torch.manual_seed(0)
    model = SeedCNN().eval()
    wrapper = RawPixelClassifier(model, mean=MEAN, std=STD).eval()
    x = _raw_pixels(4, 1, 28, 28).to(memory_format=memory_format)
    expected = model((x / 255.0 - MEAN) / STD)
    torch.testing.assert_close(wrapper(x), expected)
    # Guards against a wrapper that forgets a step: the un-normalised output must differ.
    assert not torch.allclose(wrapper(x), model(x / 255.0), atol=1e-3)


def test_statistics_are_buffers_saved_with_the_weights() -> None:
    wrapper = RawPixelClassifier(SeedCNN(), mean=MEAN, std=STD)
    state = wrapper.state_dict()
    assert state["mean"].item() == pytest.approx(MEAN)
    assert state["std"].item() == pytest.approx(STD)
    assert "mean" not in dict(wrapper.named_parameters())  # never trained
    # Buffers follow the module across dtypes (and devices).
    double = wrapper.double()
    assert double.mean.dtype == torch.float64
    assert double(_raw_pixels(1, 1, 28, 28).double()).dtype == torch.float64


def test_input_shape_follows_the_wrapped_model() -> None:
    wrapper = RawPixelClassifier(
        CNN(in_channels=3, image_size=32, num_classes=4), mean=0.5, std=0.25
    )
    assert wrapper.input_shape == (3, 32, 32)
    assert wrapper(_raw_pixels(2, 3, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize(
    "shape",
    [(1, 28, 28), (28, 28), (2, 3, 28, 28), (2, 1, 32, 32), (2, 1, 28, 27), (1, 1, 1, 28, 28)],
)
def test_rejects_wrong_input_shapes(shape: tuple[int, ...]) -> None:
    wrapper = RawPixelClassifier(SeedCNN(), mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=rf"\(N, 1, 28, 28\), got {re.escape(str(shape))}"):
        wrapper(torch.zeros(shape))


def test_rejects_integer_pixels() -> None:
    wrapper = RawPixelClassifier(SeedCNN(), mean=MEAN, std=STD)
    with pytest.raises(TypeError, match=r"got dtype torch.uint8; convert with x.float\(\)"):
        wrapper(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("mean", "std", "error", "message"),
    [
        (MEAN, 0.0, ValueError, "std=0.0 is invalid: it must be a finite number > 0"),
        (MEAN, -0.3, ValueError, "std=-0.3 is invalid"),
        (math.nan, STD, ValueError, "mean=nan is invalid: it must be a finite number"),
        (MEAN, math.inf, ValueError, "std=inf is invalid"),
        ("0.28", STD, TypeError, "mean='0.28' must be a number"),
    ],
)
def test_invalid_statistics(
    mean: object, std: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RawPixelClassifier(SeedCNN(), mean=mean, std=std)  # type: ignore[arg-type]


def test_rejects_a_non_module() -> None:
    with pytest.raises(TypeError, match=r"wraps a torch\.nn\.Module, got dict"):
        RawPixelClassifier({}, mean=MEAN, std=STD)  # type: ignore[arg-type]
