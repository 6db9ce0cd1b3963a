"""The run's validation-prediction figure shows what validation scored (flip TTA or not)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpo.tracking.recording import PREDICTIONS_ARTIFACT, run_figures
from hpo.training.loop import FitResult

CLASSES = ("left", "right")


class HalfBrightness(nn.Module):
    """Logits = brightness of the left and of the right half: a mirror swaps them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        left, right = x[..., :half].sum(dim=(1, 2, 3)), x[..., half:].sum(dim=(1, 2, 3))
        return torch.stack([left, right], dim=1)


@pytest.mark.parametrize(
    ("tta", "expected"), [(False, "pred: left 100%"), (True, "pred: left 50%")]
)
def test_prediction_figure_follows_the_runs_tta(tta: bool, expected: str) -> None:
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    images[..., :2] = 255  # bright left half: class "left" alone, a tie with its mirror
    batch = images.float() / 255
    epoch = {"train/loss": 0.1, "train/acc": 1.0, "val/loss": 0.1, "val/acc": 1.0}
    result = FitResult(history=[epoch], best_epoch=1, best_metrics=epoch, best_state={})

    figures = run_figures(
        result, HalfBrightness(), images, torch.zeros(2, dtype=torch.long), batch, CLASSES, tta=tta
    )

    grid = dict((artifact, figure) for figure, artifact in figures)[PREDICTIONS_ARTIFACT]
    titles = [ax.get_title() for ax in grid.axes if ax.get_title()]
    assert titles == [f"true: left\n{expected}"] * 2
