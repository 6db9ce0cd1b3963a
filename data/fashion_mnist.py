"""Finding, verifying and loading the Fashion-MNIST files.

The only module that knows where the files live and what their checksums are. The test set
(t10k files) is read by exactly one function, `load_test_arrays`, so a grep for it shows
every place that can see the test set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from data.idx import DatasetFileError, fix_hint, idx_header, read_idx

log = logging.getLogger(__name__)

Split = Literal["train", "test"]

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = 10
IMAGE_SIZE = 28
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "FMNIST_DIR"
# torchvision's FashionMNIST(root=cache_dir, download=True) writes here.
TORCHVISION_SUBDIR = Path("FashionMNIST", "raw")
DECODED_SUBDIR = "decoded"


@dataclass(frozen=True)
class IdxFile:
    """One published file: its name, the sha256 of its decompressed bytes, its array shape."""

    name: str
    sha256: str
    shape: tuple[int, ...]


# The single source of truth for the four files of Zalando's release. The sha256 is of the
# decompressed bytes: Debian's dataset-fashion-mnist recompressed the .gz files, so the
# checksums of the .gz files printed by Zalando and torchvision do not match them, while the
# decompressed content is identical.
FILES: dict[tuple[str, str], IdxFile] = {
    ("train", "images"): IdxFile(
        "train-images-idx3-ubyte.gz",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        (60000, IMAGE_SIZE, IMAGE_SIZE),
    ),
    ("train", "labels"): IdxFile(
        "train-labels-idx1-ubyte.gz",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        (60000,),
    ),
    ("test", "images"): IdxFile(
        "t10k-images-idx3-ubyte.gz",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        (10000, IMAGE_SIZE, IMAGE_SIZE),
    ),
    ("test", "labels"): IdxFile(
        "t10k-labels-idx1-ubyte.gz",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        (10000,),
    ),
}

_FIXES = (
    "Fixes: `sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist`; or set "
    f"data.root=/path/to/folder (or the {ENV_VAR} environment variable) to a folder holding "
    "the four files; or rerun with data.download=true where the internet is reachable."
)


def locate_files(
    split: Split, *, root: str | Path | None, cache_dir: Path, download: bool
) -> tuple[Path, Path]:
    """Find the (images, labels) files of `split`.

    Lookup order: `root` if given, else the `FMNIST_DIR` environment variable (an explicit
    folder is the only place looked: if it lacks the files that is an error, not a fallback);
    then `cache_dir/FashionMNIST/raw/` and `cache_dir/`; then `DEBIAN_DIR`; then, only when
    `download` is true, torchvision downloads into `cache_dir`. In each folder the `.gz` name is
    preferred and an already decompressed file of the same name without `.gz` is accepted.

    Args:
        split: "train" or "test".
        root: an explicit folder (also its `FashionMNIST/raw/` subfolder is looked in); None or
            "" means not set.
        cache_dir: the project's data cache.
        download: allow a torchvision download when nothing is found.

    Returns:
        The paths of the images file and the labels file.

    Raises:
        DatasetFileError: the files are not found; the message lists every place looked.
        ValueError: `split` is not "train" or "test".
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    names = (FILES[(split, "images")].name, FILES[(split, "labels")].name)
    cache_dir = Path(cache_dir).expanduser()
    explicit, origin = _explicit_root(root)
    if explicit is not None:
        return _find_in_explicit(explicit, origin, names)
    searched = [cache_dir / TORCHVISION_SUBDIR, cache_dir, DEBIAN_DIR]
    for folder in searched:
        found = _find_pair(folder, names)
        if found is not None:
            log.debug("found Fashion-MNIST %s files in %s", split, folder)
            return found
    if download:
        return _download(split, cache_dir, names)
    looked = "\n".join(f"  - {folder}" for folder in searched)
    raise DatasetFileError(
        f"Fashion-MNIST {split} files {names[0]} and {names[1]} were not found. Looked in:\n"
        f"{looked}\n  (data.root and {ENV_VAR} were not set; data.download=false)\n{_FIXES}"
    )


def _explicit_root(root: str | Path | None) -> tuple[Path | None, str]:
    if root is not None and str(root).strip():
        return Path(root).expanduser(), f"data.root={root}"
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser(), f"{ENV_VAR}={env}"
    return None, ""


def _find_in_explicit(folder: Path, origin: str, names: tuple[str, str]) -> tuple[Path, Path]:
    for candidate in (folder, folder / TORCHVISION_SUBDIR):
        found = _find_pair(candidate, names)
        if found is not None:
            return found
    raise DatasetFileError(
        f"{origin} was set, but neither {folder} nor {folder / TORCHVISION_SUBDIR} holds "
        f"{names[0]} and {names[1]} (expected both, .gz or decompressed). The explicit folder "
        f"is the only place looked. Fix: copy the files there, or unset {origin.split('=')[0]} "
        f"to use the cache, {DEBIAN_DIR} (`sudo apt-get install -y dataset-fashion-mnist`) "
        "or data.download=true."
    )


def _find_pair(folder: Path, names: tuple[str, str]) -> tuple[Path, Path] | None:
    paths = [_find_one(folder, name) for name in names]
    if paths[0] is None or paths[1] is None:
        return None
    return paths[0], paths[1]


def _find_one(folder: Path, gz_name: str) -> Path | None:
    for name in (gz_name, gz_name.removesuffix(".gz")):
        if (folder / name).is_file():
            return folder / name
    return None


def _download(split: Split, cache_dir: Path, names: tuple[str, str]) -> tuple[Path, Path]:
    # Imported here: torchvision is slow to import and only this fallback needs it.
    import torchvision

    log.info("downloading Fashion-MNIST into %s with torchvision", cache_dir)
    try:
        torchvision.datasets.FashionMNIST(root=cache_dir, train=split == "train", download=True)
    except (OSError, RuntimeError) as exc:
        raise DatasetFileError(
            f"downloading Fashion-MNIST into {cache_dir} failed ({exc}). "
            f"Expected the files in {cache_dir / TORCHVISION_SUBDIR}. {_FIXES}"
        ) from exc
    found = _find_pair(cache_dir / TORCHVISION_SUBDIR, names)
    if found is None:
        raise DatasetFileError(
            f"torchvision reported a download, but {cache_dir / TORCHVISION_SUBDIR} lacks "
            f"{names[0]} and {names[1]}. {_FIXES}"
        )
    return found


def load_train_arrays(
    *, root: str | Path | None, cache_dir: Path, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 60,000 training images and labels, verified against the published checksums.

    Args:
        root: explicit folder holding the files (see `locate_files`), or None.
        cache_dir: data cache; decoded arrays are kept under `cache_dir/decoded/`.
        download: allow a torchvision download when the files are not found.

    Returns:
        images uint8 (60000, 28, 28) and labels int64 (60000,).

    Raises:
        DatasetFileError: a file is missing, corrupt or fails its checksum.
    """
    return _load_split("train", root=root, cache_dir=Path(cache_dir), download=download)


def load_test_arrays(
    *, root: str | Path | None, cache_dir: Path, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official 10,000-image test set. THE ONLY function that reads the t10k files.

    Only the final retest of the best trial may call this (through `FashionMNISTData.load_test`);
    nothing in the training or model-selection path does, so the test set never leaks into
    hyperparameter choices.

    Args:
        root: explicit folder holding the files (see `locate_files`), or None.
        cache_dir: data cache; decoded arrays are kept under `cache_dir/decoded/`.
        download: allow a torchvision download when the files are not found.

    Returns:
        images uint8 (10000, 28, 28) and labels int64 (10000,).

    Raises:
        DatasetFileError: a file is missing, corrupt or fails its checksum.
    """
    return _load_split("test", root=root, cache_dir=Path(cache_dir), download=download)


def _load_split(
    split: Split, *, root: str | Path | None, cache_dir: Path, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    images_path, labels_path = locate_files(
        split, root=root, cache_dir=cache_dir, download=download
    )
    images = _load_verified(images_path, FILES[(split, "images")], cache_dir)
    labels = _load_verified(labels_path, FILES[(split, "labels")], cache_dir)
    if len(images) != len(labels):
        raise DatasetFileError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            f"labels; expected equal counts. {fix_hint(labels_path)}"
        )
    log.info("loaded Fashion-MNIST %s: %d images from %s", split, len(images), images_path.parent)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def _load_verified(path: Path, entry: IdxFile, cache_dir: Path) -> np.ndarray:
    """The array of `path`, from the decoded cache when it is fresh and verifies."""
    npy_path, manifest_path = _cache_paths(cache_dir, entry)
    stat = _source_stat(path)
    cached = _load_cached(npy_path, manifest_path, stat, entry)
    if cached is not None:
        return cached
    array = read_idx(path, expected_sha256=entry.sha256)
    if array.shape != entry.shape:
        raise DatasetFileError(
            f"{path}: expected shape {entry.shape}, found {array.shape}. {fix_hint(path)}"
        )
    _save_cached(array, npy_path, manifest_path, stat)
    return array


def _cache_paths(cache_dir: Path, entry: IdxFile) -> tuple[Path, Path]:
    stem = entry.name.removesuffix(".gz")
    folder = cache_dir / DECODED_SUBDIR
    return folder / f"{stem}.npy", folder / f"{stem}.json"


def _source_stat(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"source": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _load_cached(
    npy_path: Path, manifest_path: Path, stat: dict[str, Any], entry: IdxFile
) -> np.ndarray | None:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None  # no cache yet (or unreadable): decode from the source
    if manifest != stat:
        log.info("decoded cache %s is stale (source changed): rebuilding", npy_path)
        return None
    try:
        array = np.load(npy_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        log.info("decoded cache %s is unreadable (%s): rebuilding", npy_path, exc)
        return None
    if not _cache_verifies(array, entry):
        log.info("decoded cache %s fails the published sha256: rebuilding", npy_path)
        return None
    return array


def _cache_verifies(array: np.ndarray, entry: IdxFile) -> bool:
    # Rebuild the IDX bytes so the cache is checked against the same published digest.
    if array.dtype != np.uint8 or array.shape != entry.shape:
        return False
    digest = hashlib.sha256(idx_header(entry.shape))
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest() == entry.sha256


def _save_cached(
    array: np.ndarray, npy_path: Path, manifest_path: Path, stat: dict[str, Any]
) -> None:
    try:
        npy_path.parent.mkdir(parents=True, exist_ok=True)
        # Array first, manifest last: a manifest only ever describes a complete array.
        _atomic_write(npy_path, lambda fh: np.save(fh, array, allow_pickle=False))
        _atomic_write(manifest_path, lambda fh: fh.write(json.dumps(stat).encode()))
    except OSError as exc:
        log.warning(
            "could not write the decoded cache in %s (%s); continuing", npy_path.parent, exc
        )


def _atomic_write(target: Path, write: Any) -> None:
    # Same folder, then os.replace: a crash leaves either the old file or the new one.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
