"""Stratified split: exact sizes, disjoint cover, class balance, determinism."""

from __future__ import annotations

import pytest
import torch

from data.splits import stratified_split


def _imbalanced_labels(n: int, seed: int) -> torch.Tensor:
    # Class k has weight k+1, shuffled, so proportions are uneven and remainders matter.
    weights = torch.arange(1, 8, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(weights, n, replacement=True, generator=g)


@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize(("n", "val_size"), [(10, 1), (97, 13), (1000, 250), (5003, 4999)])
def test_split_is_a_stratified_partition(n: int, val_size: int, seed: int) -> None:
    labels = _imbalanced_labels(n, seed=n)
    train_idx, val_idx = stratified_split(labels, val_size, seed)
    assert train_idx.dtype == val_idx.dtype == torch.int64
    assert len(val_idx) == val_size and len(train_idx) == n - val_size
    assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(n))
    assert torch.equal(train_idx, train_idx.sort().values)
    assert torch.equal(val_idx, val_idx.sort().values)
    counts = torch.bincount(labels, minlength=7)
    val_counts = torch.bincount(labels[val_idx], minlength=7)
    exact = counts.double() * val_size / n
    # Largest-remainder rounding: each class is within one of its exact share.
    assert bool(((val_counts - exact).abs() < 1).all())


@pytest.mark.parametrize("seed", [0, 7])
def test_same_seed_same_split_other_seed_other_split(seed: int) -> None:
    labels = _imbalanced_labels(500, seed=3)
    first = stratified_split(labels, 100, seed)
    again = stratified_split(labels.clone(), 100, seed)
    other = stratified_split(labels, 100, seed + 1)
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert not torch.equal(first[1], other[1])


@pytest.mark.parametrize(
    ("labels", "val_size", "expected_val_counts"),
    [
        # exact shares 2.5, 1.5, 1.0: one extra goes to the lower class id on a tie
        ([0] * 5 + [1] * 3 + [2] * 2, 5, [3, 1, 1]),
        # shares 0.6, 0.3, 0.1 of 1 -> the largest remainder (class 0) gets it
        ([0] * 6 + [1] * 3 + [2], 1, [1, 0, 0]),
        # shares 1.8, 0.9, 0.3 -> floors 1, 0, 0; remainders .8, .9, .3 -> classes 1 then 0
        ([0] * 6 + [1] * 3 + [2], 3, [2, 1, 0]),
        ([4, 4, 4, 4], 3, [0, 0, 0, 0, 3]),  # a single class, with gaps below it
    ],
)
def test_largest_remainder_quotas(
    labels: list[int], val_size: int, expected_val_counts: list[int]
) -> None:
    tensor = torch.tensor(labels)
    _, val_idx = stratified_split(tensor, val_size, seed=0)
    counts = torch.bincount(tensor[val_idx], minlength=len(expected_val_counts))
    assert counts.tolist() == expected_val_counts


def test_does_not_touch_global_rng() -> None:
    state = torch.get_rng_state()
    stratified_split(torch.arange(100) % 10, 20, seed=0)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("val_size", [0, -1, 10, 11])
def test_val_size_out_of_range(val_size: int) -> None:
    with pytest.raises(ValueError, match=f"got {val_size}"):
        stratified_split(torch.arange(10) % 2, val_size, seed=0)


@pytest.mark.parametrize(
    ("labels", "val_size", "error"),
    [
        (torch.rand(10), 2, TypeError),
        (torch.zeros(2, 5, dtype=torch.int64), 2, ValueError),
        (torch.tensor([0, 1, -1, 2]), 2, ValueError),
        (torch.arange(10), 2.0, TypeError),
        (torch.arange(10), True, TypeError),
    ],
)
def test_bad_inputs(labels: torch.Tensor, val_size: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        stratified_split(labels, val_size, seed=0)  # type: ignore[arg-type]
