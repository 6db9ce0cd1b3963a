from __future__ import annotations

import pytest
import torch

from hpo.retest.metrics import confusion_matrix, score_predictions, wilson_interval


@pytest.mark.parametrize(
    ("correct", "total", "low", "high"),
    [
        (9017, 10000, 0.8957, 0.9074),  # the original project's accuracy on 10k images
        (50, 100, 0.4038, 0.5962),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_interval(correct: int, total: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(correct, total)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)
    assert lo <= correct / total <= hi


def test_wilson_interval_needs_samples() -> None:
    with pytest.raises(ValueError, match="total must be > 0"):
        wilson_interval(0, 0)


def test_confusion_matrix_rows_are_true_classes() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(predicted, labels, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_score_predictions_per_class_and_pairs() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 1, 1, 1, 1, 2, 0])
    logits = torch.nn.functional.one_hot(predicted, 3).float() * 5
    report = score_predictions(logits, labels, ["a", "b", "c"])
    assert report.accuracy == pytest.approx(5 / 8)
    a, b, c = report.per_class
    assert (a.precision, a.recall, a.support) == (pytest.approx(2 / 3), 0.5, 4)
    assert (b.precision, b.recall) == (0.5, 1.0)
    assert c.f1 == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert report.most_confused[0] == {"true": "a", "predicted": "b", "count": 2}
    assert report.most_confused[1] == {"true": "c", "predicted": "a", "count": 1}
    expected_loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert report.loss == pytest.approx(expected_loss)


def test_class_never_predicted_has_zero_precision_not_nan() -> None:
    labels = torch.tensor([0, 1])
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    _, b = score_predictions(logits, labels, ["a", "b"]).per_class
    assert (b.precision, b.recall, b.f1) == (0.0, 0.0, 0.0)
