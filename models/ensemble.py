"""Several trained classifiers as one module: the average of their class probabilities."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from models.flip_tta import SHAPE_ATTRIBUTES


class ProbabilityEnsemble(nn.Module):
    """Averages the class probabilities of several classifiers; returns the log of the average.

    ``forward(x) = log(mean_i softmax(member_i(x_i)))``. Log-probabilities, not logits, so
    that ``argmax`` and ``softmax`` downstream (accuracy, the registered model's scores) are
    exactly those of the averaged probabilities, and ``cross_entropy`` of the output is the
    ensemble's log loss. Averaging probabilities rather than logits keeps one over-confident
    member from outvoting the others.

    Members trained on different image sets were normalised with different statistics (the
    50k train split against all 60k images differ by a hair). ``x`` arrives normalised with
    the first member's ``(mean, std)``, and each member gets it re-normalised with its own:
    ``x_i = (x * std_0 + mean_0 - mean_i) / std_i``, an exact affine map stored as buffers.

    Args:
        members: Classifiers mapping normalised images (N, C, H, W) to logits
            (N, num_classes), all with the same classes.
        stats: ``(mean, std)`` each member was trained with, on the 0-1 pixel scale, in the
            order of ``members``.

    Raises:
        TypeError: If a member is not an ``nn.Module``.
        ValueError: If there is no member, ``stats`` does not match ``members`` or a ``std``
            is not a finite number > 0.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, members: Sequence[nn.Module], *, stats: Sequence[tuple[float, float]]):
        super().__init__()
        if not members:
            raise ValueError("ProbabilityEnsemble needs at least one member")
        for member in members:
            if not isinstance(member, nn.Module):
                raise TypeError(
                    f"ProbabilityEnsemble members are torch.nn.Modules, got {type(member).__name__}"
                )
        if len(stats) != len(members):
            raise ValueError(
                f"ProbabilityEnsemble got {len(members)} members but {len(stats)} (mean, std) "
                "pairs; pass the statistics each member was trained with"
            )
        for mean, std in stats:
            if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
                raise ValueError(
                    f"ProbabilityEnsemble: (mean={mean}, std={std}) must be finite, with std > 0"
                )
        self.members = nn.ModuleList(members)
        mean_0, std_0 = stats[0]
        self.register_buffer("scale", torch.tensor([std_0 / std for _, std in stats]))
        self.register_buffer("shift", torch.tensor([(mean_0 - m) / s for m, s in stats]))
        # Pass the input shape on, so RawPixelClassifier checks it as for one member.
        for name in SHAPE_ATTRIBUTES:
            if hasattr(members[0], name):
                setattr(self, name, getattr(members[0], name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the members' mean class probabilities (N, num_classes), in fp32."""
        log_probs = [
            member(x * self.scale[i] + self.shift[i]).float().log_softmax(dim=1)
            for i, member in enumerate(self.members)
        ]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))
