"""A run's figures are plain matplotlib Figures: saved to files, never held by pyplot."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from hpo.tracking.figures import confusion_matrices, learning_curves, prediction_grid

EPOCH = {"train/loss": 0.5, "train/acc": 0.8, "val/loss": 0.6, "val/acc": 0.75}


def test_run_figures_need_no_pyplot_and_save_as_png(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    figures = {
        "curves": learning_curves([EPOCH, EPOCH], best_epoch=2),
        "grid": prediction_grid(
            torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8),
            torch.tensor([0, 1, 2]),
            torch.eye(3),
            names,
            columns=2,
        ),
        "confusion": confusion_matrices([[5, 1, 0], [0, 6, 0], [1, 0, 4]], names),
    }
    # pyplot's figure manager never saw them: nothing to close, nothing to show.
    assert plt.get_fignums() == []
    for name, figure in figures.items():
        assert type(figure) is Figure
        figure.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # The grid: one titled cell per image, the rest of its 2x2 frame left blank.
    titles = [ax.get_title() for ax in figures["grid"].axes if ax.get_title()]
    assert titles == ["true: a\npred: a 100%", "true: b\npred: b 100%", "true: c\npred: c 100%"]
