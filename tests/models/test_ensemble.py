from __future__ import annotations

import math

import pytest
import torch

from models import FlipTTA, ProbabilityEnsemble, RawPixelClassifier, SeedCNN


def _nets(count: int) -> list[SeedCNN]:
    nets = []
    for seed in range(count):
        torch.manual_seed(seed)
        nets.append(SeedCNN().eval())
    return nets


def _images(n: int = 5) -> torch.Tensor:
    return torch.randn((n, 1, 28, 28), generator=torch.Generator().manual_seed(7))


def test_output_is_the_log_of_the_members_mean_probabilities() -> None:
    a, b, c = _nets(3)
    x = _images()
    ensemble = ProbabilityEnsemble([a, b, c], stats=[(0.3, 0.4)] * 3)
    with torch.inference_mode():
        out = ensemble(x)
        mean_probs = (a(x).softmax(1) + b(x).softmax(1) + c(x).softmax(1)) / 3
    torch.testing.assert_close(out.exp(), mean_probs)
    # Log-probabilities: softmax downstream gives the average back, not a re-weighted one.
    torch.testing.assert_close(out.softmax(1), mean_probs)
    # Not the mean of the logits (which a confident member would dominate).
    with torch.inference_mode():
        logit_mean = ((a(x) + b(x) + c(x)) / 3).softmax(1)
    assert not torch.allclose(logit_mean, mean_probs, atol=1e-4)


def test_one_member_gives_that_members_log_softmax() -> None:
    (net,) = _nets(1)
    x = _images()
    with torch.inference_mode():
        torch.testing.assert_close(
            ProbabilityEnsemble([net], stats=[(0.3, 0.4)])(x), net(x).log_softmax(1)
        )


def test_members_get_inputs_in_their_own_normalisation() -> None:
    """A member trained on other images (other mean/std) sees the raw pixels normalised
    with its own statistics, not the first member's."""
    a, b = _nets(2)
    pixels = torch.rand(4, 1, 28, 28)  # on the 0-1 scale
    stats_a, stats_b = (0.286, 0.353), (0.290, 0.350)
    ensemble = ProbabilityEnsemble([a, b], stats=[stats_a, stats_b])
    x = (pixels - stats_a[0]) / stats_a[1]  # what the loader feeds: the first's normalisation
    with torch.inference_mode():
        expected = (
            a((pixels - stats_a[0]) / stats_a[1]).softmax(1)
            + b((pixels - stats_b[0]) / stats_b[1]).softmax(1)
        ) / 2
        torch.testing.assert_close(ensemble(x).exp(), expected)
        # Fed the first's normalisation as is, b would give other outputs.
        assert not torch.allclose(b(x).softmax(1), b((pixels - 0.29) / 0.35).softmax(1))


def test_serves_under_flip_tta_and_raw_pixels_with_its_members_state() -> None:
    a, b = _nets(2)
    ensemble = ProbabilityEnsemble([a, b], stats=[(0.286, 0.353)] * 2)
    served = RawPixelClassifier(FlipTTA(ensemble), mean=0.286, std=0.353).eval()
    assert served.input_shape == (1, 28, 28)
    raw = torch.rand(3, 1, 28, 28) * 255
    with torch.inference_mode():
        out = served(raw)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    keys = set(ensemble.state_dict())
    assert {f"members.0.{k}" for k in a.state_dict()} <= keys
    assert {f"members.1.{k}" for k in b.state_dict()} <= keys
    assert {"scale", "shift"} <= keys


def test_exports_with_torch_export() -> None:
    a, b = _nets(2)
    ensemble = ProbabilityEnsemble([a, b], stats=[(0.286, 0.353), (0.29, 0.35)]).eval()
    x = _images(2)
    exported = torch.export.export(ensemble, (x,))
    with torch.inference_mode():
        torch.testing.assert_close(exported.module()(x), ensemble(x))


@pytest.mark.parametrize(
    ("members", "stats", "error", "match"),
    [
        ([], [], ValueError, "at least one member"),
        ([{}], [(0.3, 0.4)], TypeError, "got dict"),
        (None, [(0.3, 0.4)], ValueError, r"2 members but 1 \(mean, std\)"),
        (None, [(0.3, 0.4), (0.3, 0.0)], ValueError, "finite, with std > 0"),
        (None, [(0.3, 0.4), (math.nan, 0.4)], ValueError, "finite, with std > 0"),
    ],
)
def test_rejects_bad_members_or_statistics(members, stats, error, match) -> None:
    with pytest.raises(error, match=match):
        ProbabilityEnsemble(_nets(2) if members is None else members, stats=stats)
