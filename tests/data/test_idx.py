"""IDX reading: good files, and every way a file can be bad."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from data.idx import DatasetFileError, fix_hint, idx_header, read_idx
from tests.data.fakes import idx_bytes, write_idx

LABELS = np.array([3, 0, 9, 1, 1], dtype=np.uint8)
IMAGES = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)


@pytest.mark.parametrize("array", [LABELS, IMAGES], ids=["labels-1d", "images-3d"])
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_read_idx_round_trips(tmp_path: Path, array: np.ndarray, compress: bool) -> None:
    path = tmp_path / ("f.gz" if compress else "f")
    digest = write_idx(path, array, compress=compress)
    out = read_idx(path, expected_sha256=digest)
    assert out.dtype == np.uint8
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # callers wrap it in a tensor; a read-only buffer would warn there


def test_checksum_is_case_insensitive(tmp_path: Path) -> None:
    digest = write_idx(tmp_path / "f.gz", LABELS)
    out = read_idx(tmp_path / "f.gz", expected_sha256=digest.upper())
    np.testing.assert_array_equal(out, LABELS)


def test_checksum_mismatch_names_both_digests(tmp_path: Path) -> None:
    actual = write_idx(tmp_path / "f.gz", LABELS)
    expected = "0" * 64
    with pytest.raises(DatasetFileError) as info:
        read_idx(tmp_path / "f.gz", expected_sha256=expected)
    message = str(info.value)
    assert expected in message and actual in message and str(tmp_path / "f.gz") in message


def _bad_file_cases() -> list[tuple[str, bytes, str]]:
    good = idx_bytes(IMAGES)
    wrong_magic = b"\x00\x00\x08\x02" + good[4:]
    return [
        ("wrong-magic", gzip.compress(wrong_magic), "0x00000802"),
        ("short-payload", gzip.compress(good[:-5]), f"needs {IMAGES.size} payload bytes, found 19"),
        ("long-payload", gzip.compress(good + b"\x00"), "found more than that"),
        ("short-header", gzip.compress(good[:8]), "truncated"),
        ("empty", gzip.compress(b""), "found 0 bytes"),
        ("not-gzip", good, "valid gzip"),
        ("cut-gzip-stream", gzip.compress(good)[:-12], "valid gzip"),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [c[1:] for c in _bad_file_cases()],
    ids=[c[0] for c in _bad_file_cases()],
)
def test_bad_files_raise_dataset_file_error(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DatasetFileError) as info:
        read_idx(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message
    assert "Fix:" in message


def test_missing_file_names_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "nope.gz"
    with pytest.raises(DatasetFileError, match="found nothing") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "data.download=true" in str(info.value)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"), "--reinstall"),
        (Path("/somewhere/else/train-images-idx3-ubyte.gz"), "data.download=true"),
    ],
)
def test_fix_hint_depends_on_origin(path: Path, expected: str) -> None:
    assert expected in fix_hint(path)


@pytest.mark.parametrize("array", [LABELS, IMAGES])
def test_idx_header_rebuilds_the_file_digest(array: np.ndarray) -> None:
    rebuilt = hashlib.sha256(idx_header(array.shape) + array.tobytes()).hexdigest()
    assert rebuilt == hashlib.sha256(idx_bytes(array)).hexdigest()


def test_idx_header_rejects_unsupported_rank() -> None:
    with pytest.raises(ValueError, match="1-D or 3-D"):
        idx_header((2, 2))
