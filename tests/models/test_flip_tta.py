from __future__ import annotations

import pytest
import torch

from models import FlipTTA, RawPixelClassifier, SeedCNN

MEAN, STD = 0.2860, 0.3530


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_output_is_the_mean_of_the_image_and_its_mirror(memory_format) -> None:
    torch.manual_seed(0)
    net = SeedCNN().eval().to(memory_format=memory_format)
    x = _images(4, 1, 28, 28).to(memory_format=memory_format)
    with torch.inference_mode():
        plain, mirrored, tta = net(x), net(x.flip(-1)), FlipTTA(net)(x)
    torch.testing.assert_close(tta, (plain + mirrored) / 2)
    # The net is not mirror-invariant, so a wrapper that skipped the flip would fail here.
    assert not torch.allclose(tta, plain, atol=1e-4)


def test_a_mirror_symmetric_image_gives_the_plain_logits() -> None:
    torch.manual_seed(0)
    net = SeedCNN().eval()
    half = _images(2, 1, 28, 14)
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)
    assert torch.equal(symmetric, symmetric.flip(-1))
    with torch.inference_mode():
        torch.testing.assert_close(FlipTTA(net)(symmetric), net(symmetric))


def test_under_raw_pixel_wrapper_keeps_input_checks_and_flips() -> None:
    torch.manual_seed(0)
    net = SeedCNN(image_size=28).eval()
    served = RawPixelClassifier(FlipTTA(net), mean=MEAN, std=STD).eval()
    assert served.input_shape == (1, 28, 28)
    x = torch.rand(3, 1, 28, 28) * 255
    normalised = (x / 255 - MEAN) / STD
    with torch.inference_mode():
        expected = (net(normalised) + net(normalised.flip(-1))) / 2
        torch.testing.assert_close(served(x), expected)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        served(torch.rand(3, 1, 32, 32))


def test_state_dict_is_the_wrapped_networks_under_net() -> None:
    net = SeedCNN()
    keys = set(FlipTTA(net).state_dict())
    assert keys == {f"net.{k}" for k in net.state_dict()}


def test_rejects_a_non_module() -> None:
    with pytest.raises(TypeError, match=r"FlipTTA wraps a torch\.nn\.Module, got dict"):
        FlipTTA({})  # type: ignore[arg-type]


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`x` moved by (dy, dx) pixels, the uncovered border filled by reflection, per pixel."""
    height, width = x.shape[-2:]
    out = torch.empty_like(x)
    for i in range(height):
        for j in range(width):
            si, sj = i - dy, j - dx
            si = -si if si < 0 else (2 * (height - 1) - si if si >= height else si)
            sj = -sj if sj < 0 else (2 * (width - 1) - sj if sj >= width else sj)
            out[..., i, j] = x[..., si, sj]
    return out


@pytest.mark.parametrize("translate", [1, 2])
def test_translate_adds_the_shifted_views_with_their_mirrors(translate: int) -> None:
    torch.manual_seed(0)
    net = SeedCNN().eval()
    x = _images(3, 1, 28, 28)

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return (net(v) + net(v.flip(-1))) / 2

    with torch.inference_mode():
        expected = (
            0.5 * mirrored(x)
            + 0.25 * mirrored(_shifted(x, translate, translate))
            + 0.25 * mirrored(_shifted(x, -translate, -translate))
        )
        got = FlipTTA(net, translate)(x)
    torch.testing.assert_close(got, expected)
    with torch.inference_mode():  # the shifted views change the answer
        assert not torch.allclose(got, FlipTTA(net)(x), atol=1e-4)


@pytest.mark.parametrize("translate", [-1, 1.5, True])
def test_translate_must_be_whole_pixels(translate) -> None:
    with pytest.raises(ValueError, match="translate must be an int >= 0"):
        FlipTTA(SeedCNN(), translate)
