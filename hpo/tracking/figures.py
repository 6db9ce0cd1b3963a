"""Matplotlib figures of a training run: learning curves and sample predictions."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: runs on headless machines and inside sweeps

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure


def learning_curves(history: Sequence[dict[str, float]], best_epoch: int | None = None) -> Figure:
    """Loss and accuracy per epoch, train and validation side by side."""
    epochs = list(range(1, len(history) + 1))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
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
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.0 * rows), squeeze=False)
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
    fig, axes = plt.subplots(1, 2, figsize=(17, 7.5), constrained_layout=True)
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
