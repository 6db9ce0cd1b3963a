"""Classification metrics of one pass over a test set: plain torch, no tracking."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

# Two-sided 95% normal quantile, for the Wilson score interval.
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class ClassScores:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class RetestReport:
    """Everything the retest reports about one model on one test set."""

    accuracy: float
    accuracy_ci95: tuple[float, float]
    loss: float
    num_samples: int
    per_class: list[ClassScores]
    confusion: list[list[int]]  # rows = true class, columns = predicted class
    most_confused: list[dict[str, object]]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def wilson_interval(correct: int, total: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved near 0 and 1)."""
    if total <= 0:
        raise ValueError(f"total must be > 0, got {total}")
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # At p = 0 or 1 the bound is exactly 0 or 1; float rounding would land a hair inside.
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return low, high


def confusion_matrix(
    predicted: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; rows are true classes."""
    index = labels.long() * num_classes + predicted.long()
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def score_predictions(
    logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], top_pairs: int = 5
) -> RetestReport:
    """Accuracy with its 95% interval, loss, per-class scores, confusion and worst pairs."""
    num_classes = len(class_names)
    predicted = logits.argmax(dim=1)
    matrix = confusion_matrix(predicted, labels, num_classes)
    correct = int(matrix.diag().sum())
    total = int(matrix.sum())
    return RetestReport(
        accuracy=correct / total,
        accuracy_ci95=wilson_interval(correct, total),
        loss=F.cross_entropy(logits.float(), labels.long()).item(),
        num_samples=total,
        per_class=_class_scores(matrix, class_names),
        confusion=matrix.tolist(),
        most_confused=_most_confused(matrix, class_names, top_pairs),
    )


def _class_scores(matrix: torch.Tensor, class_names: Sequence[str]) -> list[ClassScores]:
    true_positive = matrix.diag().double()
    predicted = matrix.sum(dim=0).double()
    actual = matrix.sum(dim=1).double()
    precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), 0.0)
    recall = torch.where(actual > 0, true_positive / actual.clamp(min=1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp(min=1e-12), 0.0)
    return [
        ClassScores(name, float(precision[i]), float(recall[i]), float(f1[i]), int(actual[i]))
        for i, name in enumerate(class_names)
    ]


def _most_confused(
    matrix: torch.Tensor, class_names: Sequence[str], top: int
) -> list[dict[str, object]]:
    off_diagonal = matrix.clone()
    off_diagonal.fill_diagonal_(0)
    counts, flat = off_diagonal.flatten().sort(descending=True)
    n = matrix.shape[0]
    pairs = []
    for count, index in zip(counts.tolist()[:top], flat.tolist()[:top], strict=True):
        if count == 0:
            break
        true, pred = divmod(index, n)
        pairs.append({"true": class_names[true], "predicted": class_names[pred], "count": count})
    return pairs
