"""Seeded, stratified train/validation splits of the training set."""

from __future__ import annotations

import torch


def stratified_split(
    labels: torch.Tensor, val_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into train and validation sets with matching class proportions.

    Each class gets `count * val_size / n` validation samples rounded by the largest-remainder
    method (ties go to the lower class id), so the sizes sum to exactly `val_size`. Which
    samples of a class go to validation is drawn from a `torch.Generator` seeded with `seed`;
    the global RNG is never touched.

    Args:
        labels: 1-D integer class labels, shape (N,).
        val_size: number of validation indices, 0 < val_size < N.
        seed: seed of the split; the same labels and seed always give the same split.

    Returns:
        (train_idx, val_idx): int64 CPU tensors, disjoint, together covering range(N), each
        sorted ascending.

    Raises:
        TypeError: labels is not an integer tensor, or val_size/seed is not an int.
        ValueError: labels is not 1-D, holds negative values, or val_size is out of range.
    """
    labels = _check_labels(labels)
    n = labels.numel()
    if isinstance(val_size, bool) or not isinstance(val_size, int):
        raise TypeError(f"val_size must be an int, got {type(val_size).__name__} {val_size!r}")
    if not 0 < val_size < n:
        raise ValueError(
            f"val_size must be between 1 and {n - 1} (the set has {n} samples), got {val_size}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    counts = torch.bincount(labels)
    quota = _largest_remainder(counts, val_size, n)
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    # Group the shuffled indices by class (stable sort keeps the random order within a class),
    # then each sample's rank inside its class decides whether it is among the first `quota`.
    grouped = perm[torch.argsort(labels[perm], stable=True)]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts.repeat_interleave(counts)
    is_val = rank < quota.repeat_interleave(counts)
    return grouped[~is_val].sort().values, grouped[is_val].sort().values


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    labels = labels.to("cpu", torch.int64)
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0, found {int(labels.min())}")
    return labels


def _largest_remainder(counts: torch.Tensor, total: int, n: int) -> torch.Tensor:
    # Integer arithmetic: exact shares are counts * total / n, no float rounding involved.
    scaled = counts * total
    quota = scaled // n
    remainder = scaled % n
    missing = total - int(quota.sum())
    # Stable descending sort: equal remainders favour the lower class id, deterministically.
    order = torch.argsort(remainder, descending=True, stable=True)
    quota[order[:missing]] += 1
    assert int(quota.sum()) == total and bool((quota <= counts).all())
    return quota
