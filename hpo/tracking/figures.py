"""Matplotlib figures of a training run: learning curves and sample predictions.

Built as plain `matplotlib.figure.Figure` objects, not through pyplot: they are only saved
to files, so they need no GUI backend (nothing to switch at import, nothing opens a window
on a desktop) and no `plt.close` (pyplot never holds them; they go with their last
reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def learning_curves(history: Sequence[dict[str, float]], best_epoch: int | None = None) -> Figure:
    """Loss and accuracy per epoch, train and validation side by side."""
    epochs = list(range(1, len(history) + 1))
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "acc")):
        for split, style in (("train", "o-"), ("val", "s-")):
            ax.plot(epochs, [h[f"{split}/{metric}"] for h in history], style, label=split)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy loss")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title("Loss")
    ax_acc.set_title("Accuracy")
    return fig


def prediction_grid(
    images: torch.Tensor,
    labels: torch.Tensor,
    probs: torch.Tensor,
    class_names: Sequence[str],
    *,
    columns: int = 8,
    title: str = "Validation predictions",
) -> Figure:
    """A grid of images titled with true and predicted label; mistakes in red.

    Args:
        images: uint8 (N, 1, H, W) or (N, H, W) raw pixels.
        labels: int (N,) true classes.
        probs: float (N, num_classes) predicted probabilities.
        class_names: one name per class.
        columns: images per row.
        title: figure title.
    """
    count = images.shape[0]
    rows = max(1, -(-count // columns))
    fig = Figure(figsize=(1.7 * columns, 2.0 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    confidence, predicted = probs.max(dim=1)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(images[i].reshape(images.shape[-2:]).cpu().numpy(), cmap="gray", vmin=0, vmax=255)
        true, pred = int(labels[i]), int(predicted[i])
        ax.set_title(
            f"true: {class_names[true]}\npred: {class_names[pred]} {confidence[i]:.0%}",
            fontsize=7,
            color="black" if true == pred else "red",
        )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrices(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """The confusion matrix as counts and row-normalised (recall per true class)."""
    counts = torch.tensor(confusion, dtype=torch.float64)
    normalised = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    fig = Figure(figsize=(17, 7.5), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, matrix, title, fmt in (
        (axes[0], counts, "Counts", "{:.0f}"),
        (axes[1], normalised, "Normalised by true class", "{:.2f}"),
    ):
        image = ax.imshow(matrix.numpy(), cmap="Blues")
        fig.colorbar(image, ax=ax, shrink=0.8)
        threshold = float(matrix.max()) / 2
        for (row, col), value in ((rc, matrix[rc].item()) for rc in _cells(matrix)):
            ax.text(
                col,
                row,
                fmt.format(value),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > threshold else "black",
            )
        ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    return fig


def _cells(matrix: torch.Tensor) -> list[tuple[int, int]]:
    return [(r, c) for r in range(matrix.shape[0]) for c in range(matrix.shape[1])]
