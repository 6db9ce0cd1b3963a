"""An airbench-style CNN: Keller Jordan's airbench94 CIFAR-10 network, reshaped for 1x28x28.

Shape (28x28 inputs, default ``widths=(32, 128, 128)``)::

    stem    whiten=true:  frozen whitening conv2x2 (no padding, 8*C filters) - GELU  28 -> 27
            whiten=false: conv3x3(C -> stem_width, pad 1) - BN - GELU              28 -> 28
    block   x3: conv3x3(pad 1) - MaxPool2d(2) - BN - GELU - conv3x3(pad 1) - BN - GELU
            sizes 27 -> 13 -> 6 -> 3 with whitening, 28 -> 14 -> 7 -> 3 without
    head    global max pool - Linear(widths[-1] -> num_classes, no bias) - x head_scale

Why this shape: each block pools right after its first conv, so its BatchNorm, GELU and
second conv run on a quarter of the pixels. For 28x28 inputs and the default widths that is
21M multiply-adds per image (30M with the plain stem, which starts at 28x28), against about
50M with the pool at the end of each block. Every conv feeds a BatchNorm, so none has a bias.
The small ``head_scale`` (airbench: 1/9) keeps the initial logits, and so the first
gradients, small, as airbench tuned it for its high learning rates.

Whitening: the first layer is not learned. Its filters are computed once from training
images (``init_whitening``): the 2x2 patches' (C*4)x(C*4) covariance is eigendecomposed and
each eigenvector, scaled by 1/sqrt(eigenvalue + eps), becomes a filter, so the filter outputs
on training patches are decorrelated with unit variance. Both +filter and -filter are kept
(8 channels for 1 input channel) so the GELU after it drops no direction. The 2x2 conv has
no padding because a zero-padded border would feed it patches unlike those its statistics
came from; the odd 27x27 size it leaves is absorbed by floor pooling (27 -> 13 -> 6 -> 3).
The filters are a buffer: saved in the ``state_dict`` (a checkpoint reloads exactly), moved
with the module, never seen by an optimizer and not counted as trainable parameters.

Identity init (``identity_init=True``, airbench's choice; off by default): each 3x3 conv
starts as PyTorch's default init with its first ``in_channels`` filters replaced by a Dirac
delta, so the conv initially passes its input channels through unchanged (a conv that widens
passes them on in its first channels, one of equal width is the identity). The net then
starts close to a stack of pools and GELUs over the whitened input; airbench uses it with
its high learning rates. On Fashion-MNIST's accuracy recipe it scored 0.23
points lower on validation (bench/README.md), hence off.

Left as in a standard PyTorch net rather than airbench: BatchNorm has its affine weight and
default init, convs use PyTorch's default init unless ``identity_init``, no bias on the
whitening layer, no lookahead/EMA or test-time flipping (those belong to training, not here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.parameters import check_int, check_io, check_positive_float

NUM_BLOCKS = 3
# airbench's value: keeps directions of near-zero patch variance (flat background) from being
# amplified into noise, while leaving the others at almost exactly unit variance.
WHITEN_EPS = 5e-4
_PATCH = 2  # the whitening filters' size


def _check_widths(widths: object) -> tuple[int, ...]:
    example = "use e.g. model.widths=[32,128,128]"
    if isinstance(widths, str | bytes) or not isinstance(widths, Sequence):
        raise TypeError(
            f"model.widths={widths!r} must be a list of {NUM_BLOCKS} integers (the channels of "
            f"each block), got {type(widths).__name__}; {example}"
        )
    values = list(widths)
    if len(values) != NUM_BLOCKS:
        raise ValueError(
            f"model.widths={values} must have exactly {NUM_BLOCKS} entries, one per block, "
            f"got {len(values)}; {example}"
        )
    for value in values:
        # bool is an int subclass, but `true` in a widths list is a typo, never a width of 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"model.widths={values} must hold integers (no decimal point, no quotes), got "
                f"{value!r} ({type(value).__name__}); {example}"
            )
        if value < 1:
            raise ValueError(
                f"model.widths={values} is out of range: every width must be >= 1; {example}"
            )
    return tuple(values)


def _check_bn_momentum(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"model.bn_momentum={value!r} must be a number, got {type(value).__name__}")
    # PyTorch's convention: the weight of the new batch in the running statistics. 0 would
    # freeze them at their (0, 1) start, so eval-mode outputs would be meaningless.
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(
            f"model.bn_momentum={value} is out of range: it must be in (0, 1] (PyTorch's "
            "convention, weight of the new batch); use e.g. model.bn_momentum=0.1"
        )
    return float(value)


def _check_fits(image_size: int, whiten: bool) -> list[int]:
    """Spatial sizes after the stem and each block's pool: 28 -> [27, 13, 6, 3] (whiten)."""
    first = image_size - (_PATCH - 1) if whiten else image_size
    sizes = [first]
    for _ in range(NUM_BLOCKS):
        sizes.append(sizes[-1] // 2)
    if sizes[-1] >= 1:
        return sizes
    # Each of the 3 pools needs >= 2x2 to pool, so the stem must leave >= 8x8.
    minimum = 2**NUM_BLOCKS + (_PATCH - 1 if whiten else 0)
    chain = "->".join(str(s) for s in [image_size, *sizes])
    raise ValueError(
        f"model.image_size={image_size} is too small for AirbenchNet with "
        f"whiten={str(whiten).lower()}: its {NUM_BLOCKS} pools need {minimum}x{minimum} inputs at "
        f"least (sizes {chain}); use data.image_size>={minimum} in the data config "
        "(model.image_size is interpolated from it)"
    )


class _WhiteningStem(nn.Module):
    """Frozen conv2x2 (no padding) whitening the input's patches, then GELU.

    (N, C, H, W) -> (N, 8C, H-1, W-1). Until ``fit`` runs, the filters are +/- the patch's
    pixels themselves: the whitening of inputs that are white already, which passes every
    pixel on (a net built without training images still trains, just without whitening).
    """

    weight: torch.Tensor

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        dim = in_channels * _PATCH * _PATCH
        eye = torch.eye(dim).reshape(dim, in_channels, _PATCH, _PATCH)
        # A buffer, not a parameter: saved and moved with the module, invisible to optimizers.
        self.register_buffer("weight", torch.cat([eye, -eye]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(F.conv2d(x, self.weight))

    @torch.no_grad()
    def fit(self, images: torch.Tensor, eps: float) -> None:
        c = images.shape[1]
        dim = c * _PATCH * _PATCH
        # (N, C, H, W) -> (N, C, H-1, W-1, 2, 2) -> one row per patch, laid out as the
        # weight's (C, kh, kw) so that row @ filter == the conv's output at that patch.
        patches = images.unfold(2, _PATCH, 1).unfold(3, _PATCH, 1)
        rows = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dim).double()
        eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(rows.T))
        # eigh's round-off can leave a tiny negative eigenvalue on a (near) singular
        # covariance; clamping keeps eps the only thing between it and a division by zero.
        scale = (eigenvalues.clamp_min(0) + eps).rsqrt()
        # Rows = filters, largest-variance direction first (airbench's order).
        filters = (eigenvectors.T * scale[:, None]).flip(0).reshape(dim, c, _PATCH, _PATCH)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight))


def _conv_bn_gelu(in_ch: int, out_ch: int, bn_momentum: float) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),  # BN follows: a bias is wasted
        nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        nn.GELU(),
    ]


def _block(in_ch: int, out_ch: int, bn_momentum: float) -> nn.Sequential:
    """conv3x3 - MaxPool2d(2) - BN - GELU - conv3x3 - BN - GELU: (N, in, s, s) -> (N, out, s//2)."""
    conv, bn, gelu = _conv_bn_gelu(in_ch, out_ch, bn_momentum)
    second = _conv_bn_gelu(out_ch, out_ch, bn_momentum)
    return nn.Sequential(conv, nn.MaxPool2d(2), bn, gelu, *second)


@torch.no_grad()
def _set_identity(net: nn.Module) -> None:
    """Dirac-initialise the first ``in_channels`` filters of every 3x3 conv (module docstring)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            weight = module.weight
            # A conv that narrows (out < in) gets a Dirac on each of its out filters.
            nn.init.dirac_(weight[: min(weight.shape[0], weight.shape[1])])


class AirbenchNet(nn.Module):
    """airbench94's network for small square images such as Fashion-MNIST (module docstring).

    With ``whiten=True`` call ``init_whitening`` with (normalised) training images before
    training; ``hpo.builders.model`` does it from the training split. A checkpoint's
    ``state_dict`` carries the whitening filters, so a rebuilt net needs only
    ``load_state_dict``.

    Args:
        in_channels: Input channels (from the data config).
        num_classes: Number of classes, i.e. logits per sample (from the data config).
        image_size: Height = width of the input (from the data config); >= 9 with whitening,
            >= 8 without (three 2x2 pools).
        widths: Channels of the 3 blocks, each >= 1.
        whiten: First layer = frozen 2x2 whitening conv (8 * in_channels channels) + GELU;
            otherwise a learned conv3x3 stem to ``stem_width`` + BN + GELU.
        stem_width: Channels of the conv3x3 stem; used only when ``whiten`` is false (24 =
            airbench94's whitening width on CIFAR-10's 3 channels).
        bn_momentum: BatchNorm momentum in (0, 1], PyTorch's convention (weight of the new
            batch; airbench's fast statistics correspond to 0.6).
        head_scale: Factor on the logits, > 0 (airbench: 1/9).
        identity_init: Start every 3x3 conv with its first ``in_channels`` filters set to
            the identity (Dirac delta), the rest at PyTorch's default (airbench's init).

    Raises:
        ValueError: If an argument is out of range, or the pools do not fit ``image_size``.
        TypeError: If an argument has the wrong type.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        widths: Sequence[int] = (32, 128, 128),
        whiten: bool = True,
        stem_width: int = 24,
        bn_momentum: float = 0.1,
        head_scale: float = 0.125,
        identity_init: bool = False,
    ) -> None:
        super().__init__()
        check_io(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
        widths = _check_widths(widths)
        if not isinstance(whiten, bool):
            raise TypeError(f"model.whiten={whiten!r} must be true or false")
        if not isinstance(identity_init, bool):
            raise TypeError(f"model.identity_init={identity_init!r} must be true or false")
        check_int("stem_width", stem_width, minimum=1)
        bn_momentum = _check_bn_momentum(bn_momentum)
        head_scale = check_positive_float("head_scale", head_scale)
        self.sizes = _check_fits(image_size, whiten)

        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.widths = widths
        self.whiten = whiten
        self.head_scale = head_scale
        self.stem: nn.Module
        if whiten:
            self.stem = _WhiteningStem(in_channels)
            prev = 2 * in_channels * _PATCH * _PATCH
        else:
            self.stem = nn.Sequential(*_conv_bn_gelu(in_channels, stem_width, bn_momentum))
            prev = stem_width
        blocks: list[nn.Module] = []
        for width in widths:
            blocks.append(_block(prev, width, bn_momentum))
            prev = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(prev, num_classes, bias=False)
        self.identity_init = identity_init
        if identity_init:
            _set_identity(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps images (N, in_channels, image_size, image_size) to logits (N, num_classes)."""
        features = self.blocks(self.stem(x))  # (N, widths[-1], 3, 3) for 28x28 inputs
        pooled = features.amax(dim=(2, 3))  # global max pool -> (N, widths[-1])
        return self.head(pooled) * self.head_scale

    def init_whitening(self, images: torch.Tensor, eps: float = WHITEN_EPS) -> None:
        """Sets the whitening filters from training images; they stay frozen afterwards.

        Args:
            images: Float (N, in_channels, image_size, image_size) training images, normalised
                exactly as the net will see them (a few thousand are plenty: 5000 28x28
                images give 3.6M patches).
            eps: Added to every eigenvalue before its inverse square root, > 0.

        Raises:
            ValueError: If the net was built with ``whiten=False``, or ``images`` has the
                wrong shape or non-finite values.
            TypeError: If ``images`` is not a floating-point tensor.
        """
        if not isinstance(self.stem, _WhiteningStem):
            raise ValueError(
                "init_whitening needs a net built with whiten=True (model.whiten=true); this "
                "one has a learned conv3x3 stem instead"
            )
        expected = (self.in_channels, self.image_size, self.image_size)
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
            raise TypeError(
                f"init_whitening expects normalised float images, got {got}; convert uint8 "
                "pixels as the training loader does ((x / 255 - mean) / std)"
            )
        if images.dim() != 4 or tuple(images.shape[1:]) != expected or len(images) < 1:
            raise ValueError(
                f"init_whitening expects images shaped (N, {', '.join(map(str, expected))}) with "
                f"N >= 1, got {tuple(images.shape)}"
            )
        if not torch.isfinite(images).all():
            raise ValueError("init_whitening got non-finite pixel values (NaN or inf)")
        if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"init_whitening eps={eps!r} must be a finite number > 0")
        self.stem.fit(images.detach().cpu(), float(eps))

    def extra_repr(self) -> str:
        return (
            f"widths={list(self.widths)}, whiten={self.whiten}, head_scale={self.head_scale}, "
            f"identity_init={self.identity_init}"
        )
