from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from data import channel_stats, make_synthetic
from models import AirbenchNet, RawPixelClassifier, count_parameters

TINY = (4, 8, 8)  # block widths that keep these tests fast
CONF_MODEL = Path(__file__).resolve().parents[2] / "conf" / "model"


def _normalised_images(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic Fashion-MNIST-shaped images (smooth blobs: neighbouring pixels correlate),
    normalised as the training loader does, with their labels."""
    images, labels = make_synthetic(n, seed=seed)
    images = images.unsqueeze(1)  # uint8 (n, 1, 28, 28)
    mean, std = channel_stats(images)
    return (images.float() / 255 - mean) / std, labels


def _whitened(widths: tuple[int, int, int] = TINY, seed: int = 0) -> AirbenchNet:
    torch.manual_seed(seed)
    net = AirbenchNet(widths=widths)
    net.init_whitening(_normalised_images()[0])
    return net


def _patch_covariance(outputs: torch.Tensor) -> torch.Tensor:
    """Covariance of the channels of (N, C, H, W) over all N*H*W positions, (C, C)."""
    rows = outputs.permute(0, 2, 3, 1).reshape(-1, outputs.shape[1]).double()
    return torch.cov(rows.T)


@pytest.mark.parametrize(
    ("widths", "whiten", "expected"),
    [
        # Convs have no bias (BN follows); BN = weight + bias per channel; head has no bias.
        # Plain stem: conv 1->24 (216) + BN (48) = 264.
        # Block a->b: 9ab + 2b (BN) + 9b^2 + 2b (BN).
        #   24->32: 6,912 + 64 + 9,216 + 64 = 16,256
        #   32->128: 36,864 + 256 + 147,456 + 256 = 184,832
        #   128->128: 147,456 + 256 + 147,456 + 256 = 295,424
        # Head: 128 * 10 = 1,280.  264 + 16,256 + 184,832 + 295,424 + 1,280 = 498,056
        ((32, 128, 128), False, 498_056),
        # Whitening stem: 8 frozen 2x2 filters, a buffer (0 parameters); block 1 reads 8
        # channels: 8->32: 2,304 + 64 + 9,216 + 64 = 11,648.
        # 11,648 + 184,832 + 295,424 + 1,280 = 493,184
        ((32, 128, 128), True, 493_184),
        # 264 + (13,824 + 128 + 36,864 + 128) + (147,456 + 512 + 589,824 + 512)
        #     + (589,824 + 512 + 589,824 + 512) + 2,560 = 1,972,744
        ((64, 256, 256), False, 1_972_744),
    ],
)
def test_parameter_count_matches_the_architecture(
    widths: tuple[int, int, int], whiten: bool, expected: int
) -> None:
    net = AirbenchNet(widths=widths, whiten=whiten)
    assert count_parameters(net) == count_parameters(net, trainable_only=False) == expected


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(
    ("whiten", "image_size", "sizes"),
    [
        (True, 28, [27, 13, 6, 3]),  # the 2x2 whitening conv has no padding
        (False, 28, [28, 14, 7, 3]),
        (True, 9, [8, 4, 2, 1]),  # the smallest that fits
        (False, 8, [8, 4, 2, 1]),
        (True, 32, [31, 15, 7, 3]),  # airbench's own CIFAR-10 chain
    ],
)
def test_output_and_feature_shapes(
    whiten: bool, image_size: int, sizes: list[int], memory_format: torch.memory_format
) -> None:
    net = AirbenchNet(
        in_channels=3,
        num_classes=5,
        image_size=image_size,
        widths=TINY,
        whiten=whiten,
        stem_width=6,
    ).to(memory_format=memory_format)
    x = torch.randn(2, 3, image_size, image_size).to(memory_format=memory_format)
    assert net.sizes == sizes
    # Whitening: +/- one filter per patch value, 2 * (3 channels * 2 * 2) = 24 channels.
    assert net.stem(x).shape[1:] == ((24 if whiten else 6), sizes[0], sizes[0])
    assert net.blocks(net.stem(x)).shape == (2, TINY[-1], sizes[-1], sizes[-1])
    out = net(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


def test_whitening_decorrelates_patches_to_unit_variance() -> None:
    images, _ = _normalised_images()
    net = AirbenchNet(widths=TINY)
    # Before: neighbouring pixels of these smooth images are strongly correlated.
    raw = nn.functional.conv2d(images, net.stem.weight)[:, :4]  # default filters = the pixels
    assert _patch_covariance(raw)[0, 1] > 0.5
    net.init_whitening(images)
    # The conv's outputs before GELU, on the same images: the + half is white (eps = 5e-4
    # shrinks a direction of variance v to v / (v + eps), so the diagonal sits just below 1).
    outputs = nn.functional.conv2d(images, net.stem.weight)
    assert outputs.shape == (300, 8, 27, 27)
    torch.testing.assert_close(
        _patch_covariance(outputs[:, :4]), torch.eye(4, dtype=torch.float64), rtol=0, atol=0.02
    )
    # ... and the - half is its mirror, so GELU drops no direction.
    torch.testing.assert_close(outputs[:, 4:], -outputs[:, :4])


def test_whitening_filters_are_frozen() -> None:
    net = _whitened()
    filters, head = net.stem.weight.clone(), net.head.weight.clone()
    assert "stem.weight" in net.state_dict()
    assert not any(name.startswith("stem.") for name, _ in net.named_parameters())
    assert not net.stem.weight.requires_grad
    images, labels = _normalised_images(64)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.1)
    nn.functional.cross_entropy(net(images), labels).backward()
    optimizer.step()
    assert net.stem.weight.grad is None
    assert torch.equal(net.stem.weight, filters)
    assert not torch.equal(net.head.weight, head)  # the step did happen


@pytest.mark.parametrize("whiten", [True, False])
def test_state_dict_round_trip_reproduces_outputs_exactly(whiten: bool) -> None:
    torch.manual_seed(0)
    trained = AirbenchNet(widths=TINY, whiten=whiten)
    images, labels = _normalised_images(64)
    if whiten:
        trained.init_whitening(images)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    for _ in range(2):  # moves weights and BN running statistics off their starting values
        optimizer.zero_grad()
        nn.functional.cross_entropy(trained(images), labels).backward()
        optimizer.step()
    # As best-eval does: a freshly built net (other init, default filters) + the checkpoint.
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    rebuilt = AirbenchNet(widths=TINY, whiten=whiten)
    rebuilt.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(images), trained.eval()(images))
    if whiten:
        assert torch.equal(rebuilt.stem.weight, trained.stem.weight)


def test_raw_pixel_classifier_serves_it() -> None:
    images, _ = make_synthetic(4, seed=0)
    raw = images.unsqueeze(1).float()  # 0-255
    net = _whitened().eval()
    wrapper = RawPixelClassifier(net, mean=0.2860, std=0.3530).eval()
    assert wrapper.input_shape == (1, 28, 28)
    with torch.no_grad():
        logits = wrapper(raw)
        expected = net((raw / 255 - 0.2860) / 0.3530)
    assert logits.shape == (4, 10)
    torch.testing.assert_close(logits, expected)


def test_channels_last_gives_the_same_logits() -> None:
    net = _whitened().eval()
    fast = copy.deepcopy(net).to(memory_format=torch.channels_last)
    images, _ = _normalised_images(16)
    with torch.no_grad():
        torch.testing.assert_close(
            fast(images.to(memory_format=torch.channels_last)), net(images), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("whiten", [True, False])
def test_trains_in_bf16_autocast_and_channels_last(whiten: bool) -> None:
    # The training loop's CPU path: channels_last batches, forward + loss under bf16
    # autocast, backward and step outside it; one tiny epoch.
    torch.manual_seed(0)
    images, labels = _normalised_images(128)
    net = AirbenchNet(widths=TINY, whiten=whiten)
    if whiten:
        net.init_whitening(images)
    net = net.to(memory_format=torch.channels_last).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for x, y in zip(images.split(32), labels.split(32), strict=True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x.contiguous(memory_format=torch.channels_last))
            loss = nn.functional.cross_entropy(logits, y)
        assert logits.dtype == torch.bfloat16
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters outside the computation graph: {dead}"
    after = net.state_dict()
    assert all(after[k].dtype == v.dtype for k, v in before.items())  # weights stay fp32
    assert not torch.equal(after["head.weight"], before["head.weight"])
    if whiten:
        assert torch.equal(after["stem.weight"], before["stem.weight"])


def test_eval_mode_is_deterministic_and_per_sample() -> None:
    net = _whitened()
    images, labels = _normalised_images(16)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    optimizer.zero_grad()
    nn.functional.cross_entropy(net.train()(images), labels).backward()
    optimizer.step()
    net.eval()
    with torch.no_grad():
        first, second, alone = net(images), net(images), net(images[:3])
    assert torch.equal(first, second)
    torch.testing.assert_close(alone, first[:3], rtol=1e-4, atol=1e-5)


def test_head_scale_and_bn_momentum_reach_the_layers() -> None:
    net = AirbenchNet(widths=TINY, bn_momentum=0.6, head_scale=0.25, whiten=False)
    assert {m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)} == {0.6}
    x = torch.randn(3, 1, 28, 28)
    features = net.blocks(net.stem(x)).amax(dim=(2, 3))
    torch.testing.assert_close(net(x), net.head(features) * 0.25)
    assert net.head.bias is None


@pytest.mark.parametrize("whiten", [True, False])
def test_identity_init_makes_each_conv_pass_its_input_channels_through(whiten: bool) -> None:
    torch.manual_seed(0)
    net = AirbenchNet(widths=TINY, whiten=whiten, identity_init=True)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 + (0 if whiten else 1)  # two per block (+ the plain stem's)
    for conv in convs:
        out_ch, in_ch = conv.weight.shape[:2]
        x = torch.randn(2, in_ch, 6, 6)
        kept = min(out_ch, in_ch)
        # Those filters copy their input channel; the others keep PyTorch's random init.
        torch.testing.assert_close(conv(x)[:, :kept], x[:, :kept])
        if out_ch > in_ch:
            assert conv.weight[in_ch:].abs().sum() > 0
    torch.manual_seed(0)
    plain = AirbenchNet(widths=TINY, whiten=whiten)
    # Off by default: the default init's first filters are not a Dirac delta.
    first = next(m for m in plain.blocks.modules() if isinstance(m, nn.Conv2d))
    assert not torch.equal(first.weight[:1, :1], convs[-6].weight[:1, :1])
    assert "identity_init=True" in repr(net)


def test_conf_model_file_instantiates() -> None:
    data = {"in_channels": 1, "num_classes": 7, "image_size": 28}
    cfg = OmegaConf.create({"data": data, "model": OmegaConf.load(CONF_MODEL / "airbench.yaml")})
    net = instantiate(cfg.model)
    assert type(net) is AirbenchNet
    assert net.widths == (32, 128, 128) and net.whiten
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 7)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"widths": (32, 128)}, ValueError, r"exactly 3 entries, one per block, got 2"),
        ({"widths": (32, 128, 128, 256)}, ValueError, r"exactly 3 entries"),
        ({"widths": (32, 0, 128)}, ValueError, r"model.widths=\[32, 0, 128\] is out of range"),
        ({"widths": (32, 128.0, 128)}, TypeError, r"must hold integers .* got 128.0"),
        ({"widths": (32, True, 128)}, TypeError, r"must hold integers"),
        ({"widths": 32}, TypeError, r"model.widths=32 must be a list of 3 integers"),
        ({"widths": "32,128,128"}, TypeError, r"must be a list of 3 integers"),
        ({"whiten": "yes"}, TypeError, r"model.whiten='yes' must be true or false"),
        ({"identity_init": 1}, TypeError, r"model.identity_init=1 must be true or false"),
        ({"stem_width": 0}, ValueError, r"model.stem_width=0 is out of range"),
        ({"bn_momentum": 0.0}, ValueError, r"model.bn_momentum=0.0 is out of range: .*\(0, 1\]"),
        ({"bn_momentum": 1.5}, ValueError, r"model.bn_momentum=1.5 is out of range"),
        ({"bn_momentum": None}, TypeError, r"model.bn_momentum=None must be a number"),
        ({"head_scale": 0}, ValueError, r"model.head_scale=0 is out of range"),
        ({"head_scale": float("inf")}, ValueError, r"model.head_scale=inf is out of range"),
        ({"num_classes": 1}, ValueError, r"model.num_classes=1"),
        ({"image_size": 8}, ValueError, r"image_size=8 is too small .* whiten=true: .* 9x9"),
        ({"image_size": 7, "whiten": False}, ValueError, r"whiten=false: .* 8x8 .* 7->7->3->1->0"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        AirbenchNet(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("whiten", "images", "error", "message"),
    [
        (False, torch.zeros(2, 1, 28, 28), ValueError, "needs a net built with whiten=True"),
        (True, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), TypeError, "got torch.uint8"),
        (True, torch.zeros(2, 28, 28), ValueError, r"\(N, 1, 28, 28\)"),
        (True, torch.zeros(0, 1, 28, 28), ValueError, r"N >= 1"),
        (True, torch.full((2, 1, 28, 28), float("nan")), ValueError, "NaN"),
    ],
)
def test_init_whitening_rejects_bad_input(
    whiten: bool, images: torch.Tensor, error: type[Exception], message: str
) -> None:
    net = AirbenchNet(widths=TINY, whiten=whiten)
    with pytest.raises(error, match=message):
        net.init_whitening(images)
