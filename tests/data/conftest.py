"""Fixtures for data/ tests: tiny IDX files standing in for the real Fashion-MNIST."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from data import fashion_mnist as fm
from tests.data.fakes import FakeFashionMNIST, idx_bytes


@pytest.fixture
def fake_fmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeFashionMNIST:
    """Patch FILES to tiny arrays (train 200, test 50 images of 28x28) and isolate lookups.

    DEBIAN_DIR points at an empty tmp folder and FMNIST_DIR is unset, so a test only sees the
    files it writes.
    """
    rng = np.random.default_rng(0)
    sizes = {"train": 200, "test": 50}
    arrays: dict[tuple[str, str], np.ndarray] = {}
    table = {}
    for split, n in sizes.items():
        arrays[(split, "images")] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[(split, "labels")] = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(arrays[(split, "labels")])
        for kind in ("images", "labels"):
            array = arrays[(split, kind)]
            digest = hashlib.sha256(idx_bytes(array)).hexdigest()
            table[(split, kind)] = fm.IdxFile(fm.FILES[(split, kind)].name, digest, array.shape)
    monkeypatch.setattr(fm, "FILES", table)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    return FakeFashionMNIST(arrays, tmp_path / "debian")
