"""Reading and verifying IDX files, the format of the MNIST family.

An IDX file is a big-endian header (magic, then one uint32 per dimension) followed by the
raw array bytes. We support the two kinds Fashion-MNIST uses: 1-D uint8 labels and 3-D uint8
images, gzip-compressed or not.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import struct
import zlib
from io import BufferedIOBase
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# magic -> number of dimensions; 0x08 in the third byte is the uint8 element type.
IDX_MAGIC_TO_NDIM: dict[int, int] = {0x00000801: 1, 0x00000803: 3}
_NDIM_TO_MAGIC = {ndim: magic for magic, ndim in IDX_MAGIC_TO_NDIM.items()}

# Files under this folder come from the Debian package, which has its own repair command.
_DEBIAN_PREFIX = Path("/usr/share/datasets")
_READ_CHUNK = 1 << 22


class DatasetFileError(RuntimeError):
    """A dataset file is missing, unreadable, truncated or fails its checksum.

    The message names the file, what was expected versus found, and the command that fixes it.
    """


def fix_hint(path: Path) -> str:
    """The repair advice for a bad file at `path`, depending on where it came from."""
    if _is_under(path, _DEBIAN_PREFIX):
        return (
            "Fix: reinstall the package with "
            "`sudo apt-get install --reinstall dataset-fashion-mnist`."
        )
    return (
        f"Fix: delete {path} and rerun with data.download=true, or point data.root / "
        "FMNIST_DIR at a folder holding the four intact files."
    )


def idx_header(shape: tuple[int, ...]) -> bytes:
    """The IDX header bytes for a uint8 array of `shape` (used to re-verify decoded caches)."""
    if len(shape) not in _NDIM_TO_MAGIC:
        raise ValueError(f"IDX arrays here are 1-D or 3-D; got shape {shape}")
    return struct.pack(f">I{len(shape)}I", _NDIM_TO_MAGIC[len(shape)], *shape)


def read_idx(path: Path, *, expected_sha256: str | None = None) -> np.ndarray:
    """Read a (possibly gzip-compressed) IDX file into a uint8 array of the header's shape.

    A `.gz` suffix selects gzip decompression; anything else is read as raw IDX bytes.

    Args:
        path: the file to read.
        expected_sha256: hex sha256 of the decompressed bytes (header included); when given,
            a mismatch is an error.

    Returns:
        A writable uint8 array: shape (N,) for labels, (N, rows, cols) for images.

    Raises:
        DatasetFileError: the file is missing, not gzip, has an unknown magic, is truncated
            or longer than its header says, or fails the checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"{path}: expected an IDX file, found nothing. {fix_hint(path)}")
    opener = gzip.open if path.suffix == ".gz" else open
    digest = hashlib.sha256()
    try:
        with opener(path, "rb") as fh:
            shape, header = _read_header(fh, path)
            digest.update(header)
            array = _read_payload(fh, path, shape)
    except DatasetFileError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        kind = "a valid gzip file" if path.suffix == ".gz" else "a readable IDX file"
        raise DatasetFileError(
            f"{path}: expected {kind}, found an error while reading it ({exc}). {fix_hint(path)}"
        ) from exc
    digest.update(array.data)
    _check_digest(path, digest.hexdigest(), expected_sha256)
    return array.reshape(shape)


def _read_header(fh: BufferedIOBase, path: Path) -> tuple[tuple[int, ...], bytes]:
    magic_bytes = _read_exact(fh, 4)
    if len(magic_bytes) < 4:
        raise DatasetFileError(
            f"{path}: expected a 4-byte IDX magic, found {len(magic_bytes)} bytes. {fix_hint(path)}"
        )
    (magic,) = struct.unpack(">I", magic_bytes)
    if magic not in IDX_MAGIC_TO_NDIM:
        known = ", ".join(f"0x{m:08x}" for m in IDX_MAGIC_TO_NDIM)
        raise DatasetFileError(
            f"{path}: expected IDX magic {known} (uint8 labels or images), found 0x{magic:08x}. "
            f"{fix_hint(path)}"
        )
    ndim = IDX_MAGIC_TO_NDIM[magic]
    dims_bytes = _read_exact(fh, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DatasetFileError(
            f"{path}: expected {4 * ndim} header bytes after the magic, found "
            f"{len(dims_bytes)}; the file is truncated. {fix_hint(path)}"
        )
    shape = struct.unpack(f">{ndim}I", dims_bytes)
    return shape, magic_bytes + dims_bytes


def _read_payload(fh: BufferedIOBase, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    expected = math.prod(shape)
    # Read straight into the final buffer: no intermediate bytes object of the whole file.
    array = np.empty(expected, dtype=np.uint8)
    view = array.data
    got = 0
    while got < expected:
        n = fh.readinto(view[got : got + _READ_CHUNK])
        if not n:
            break
        got += n
    extra = len(fh.read(1)) if got == expected else 0
    if got != expected or extra:
        found = f"{got}" if not extra else "more than that"
        raise DatasetFileError(
            f"{path}: header shape {shape} needs {expected} payload bytes, found {found}; "
            f"the file is truncated or corrupt. {fix_hint(path)}"
        )
    return array


def _read_exact(fh: BufferedIOBase, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = fh.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _check_digest(path: Path, actual: str, expected: str | None) -> None:
    if expected is not None and actual != expected.lower():
        raise DatasetFileError(
            f"{path}: expected sha256 {expected.lower()} of the decompressed bytes, found "
            f"{actual}; the file is corrupt or not the published one. {fix_hint(path)}"
        )


def _is_under(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except OSError:
        return False
