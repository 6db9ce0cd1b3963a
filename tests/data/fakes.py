"""Helpers for data/ tests: writing tiny IDX files that stand in for Fashion-MNIST."""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data import fashion_mnist as fm

MAGIC = {1: 0x00000801, 3: 0x00000803}


def idx_bytes(array: np.ndarray) -> bytes:
    """The raw IDX encoding of a uint8 array (header + payload)."""
    header = struct.pack(f">I{array.ndim}I", MAGIC[array.ndim], *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> str:
    """Write `array` as an IDX file (gzip when `compress`); return the sha256 of the raw bytes."""
    raw = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass
class FakeFashionMNIST:
    """Small stand-in arrays for the four files, with FILES patched to their checksums."""

    arrays: dict[tuple[str, str], np.ndarray]
    debian_dir: Path

    def write(self, folder: Path, splits: tuple[str, ...] = ("train", "test")) -> Path:
        """Write the files of `splits` into `folder` under their published names."""
        for (split, kind), array in self.arrays.items():
            if split in splits:
                write_idx(folder / fm.FILES[(split, kind)].name, array)
        return folder
