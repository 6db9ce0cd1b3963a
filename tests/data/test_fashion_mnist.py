"""File lookup order, verified loading and the decoded-array cache (on tiny fake files)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from data import fashion_mnist as fm
from data.idx import DatasetFileError
from tests.data.fakes import FakeFashionMNIST

PLACES = ("root", "env", "cache_tv", "cache", "debian")


def _place_dirs(tmp_path: Path, fake: FakeFashionMNIST) -> dict[str, Path]:
    cache = tmp_path / "cache"
    return {
        "root": tmp_path / "root",
        "env": tmp_path / "env",
        "cache_tv": cache / "FashionMNIST" / "raw",
        "cache": cache,
        "debian": fake.debian_dir,
    }


@pytest.mark.parametrize(
    ("present", "use_root", "use_env", "winner"),
    [
        (PLACES, True, True, "root"),
        (PLACES, False, True, "env"),
        (("cache_tv", "cache", "debian"), False, False, "cache_tv"),
        (("cache", "debian"), False, False, "cache"),
        (("debian",), False, False, "debian"),
        (("root", "cache", "debian"), True, False, "root"),
    ],
)
def test_lookup_order(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_fmnist: FakeFashionMNIST,
    present: tuple[str, ...],
    use_root: bool,
    use_env: bool,
    winner: str,
) -> None:
    dirs = _place_dirs(tmp_path, fake_fmnist)
    for place in present:
        fake_fmnist.write(dirs[place])
    if use_env:
        monkeypatch.setenv(fm.ENV_VAR, str(dirs["env"]))
    root = dirs["root"] if use_root else None
    images, labels = fm.locate_files("train", root=root, cache_dir=dirs["cache"], download=False)
    assert images == dirs[winner] / "train-images-idx3-ubyte.gz"
    assert labels == dirs[winner] / "train-labels-idx1-ubyte.gz"


@pytest.mark.parametrize("how", ["root", "env"])
def test_explicit_folder_without_files_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fmnist: FakeFashionMNIST, how: str
) -> None:
    fake_fmnist.write(fake_fmnist.debian_dir)  # a fallback exists but must not be used
    empty = tmp_path / "empty"
    empty.mkdir()
    root = empty if how == "root" else None
    if how == "env":
        monkeypatch.setenv(fm.ENV_VAR, str(empty))
    with pytest.raises(DatasetFileError) as info:
        fm.locate_files("train", root=root, cache_dir=tmp_path / "cache", download=False)
    message = str(info.value)
    assert ("data.root" if how == "root" else "FMNIST_DIR") in message
    assert str(empty) in message


def test_explicit_root_accepts_torchvision_layout_and_raw_files(
    tmp_path: Path, fake_fmnist: FakeFashionMNIST
) -> None:
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    fake_fmnist.write(raw)
    (raw / "train-labels-idx1-ubyte.gz").unlink()
    (raw / "train-labels-idx1-ubyte").write_bytes(b"decompressed stand-in")
    images, labels = fm.locate_files(
        "train", root=str(tmp_path / "tv"), cache_dir=tmp_path / "c", download=False
    )
    assert images == raw / "train-images-idx3-ubyte.gz"
    assert labels == raw / "train-labels-idx1-ubyte"


def test_nothing_found_lists_places_and_fixes(
    tmp_path: Path, fake_fmnist: FakeFashionMNIST
) -> None:
    fake_fmnist.write(fake_fmnist.debian_dir, splits=("test",))  # the wrong split only
    with pytest.raises(DatasetFileError) as info:
        fm.locate_files("train", root=None, cache_dir=tmp_path / "cache", download=False)
    message = str(info.value)
    for expected in (
        str(tmp_path / "cache" / "FashionMNIST" / "raw"),
        str(fake_fmnist.debian_dir),
        "apt-get install -y dataset-fashion-mnist",
        "data.root=",
        "FMNIST_DIR",
        "data.download=true",
    ):
        assert expected in message


def test_half_a_pair_is_not_found(tmp_path: Path, fake_fmnist: FakeFashionMNIST) -> None:
    fake_fmnist.write(tmp_path / "cache")
    (tmp_path / "cache" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetFileError):
        fm.locate_files("train", root=None, cache_dir=tmp_path / "cache", download=False)


def _fake_torchvision(
    monkeypatch: pytest.MonkeyPatch, fake: FakeFashionMNIST, *, fail: bool = False
) -> list[dict[str, Any]]:
    """Install a stand-in `torchvision` whose FashionMNIST writes the fake files."""
    calls: list[dict[str, Any]] = []

    def fashion_mnist(*, root: Path, train: bool, download: bool) -> None:
        calls.append({"root": root, "train": train, "download": download})
        if fail:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
        fake.write(Path(root) / "FashionMNIST" / "raw")

    module = types.ModuleType("torchvision")
    module.datasets = types.SimpleNamespace(FashionMNIST=fashion_mnist)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", module)
    return calls


def test_download_only_when_allowed_and_nothing_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fmnist: FakeFashionMNIST
) -> None:
    calls = _fake_torchvision(monkeypatch, fake_fmnist)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetFileError):
        fm.locate_files("train", root=None, cache_dir=cache, download=False)
    assert calls == []
    images, _ = fm.locate_files("train", root=None, cache_dir=cache, download=True)
    assert calls == [{"root": cache, "train": True, "download": True}]
    assert images == cache / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    fm.locate_files("train", root=None, cache_dir=cache, download=True)
    assert len(calls) == 1  # second time the cache has the files


def test_failed_download_is_a_dataset_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fmnist: FakeFashionMNIST
) -> None:
    _fake_torchvision(monkeypatch, fake_fmnist, fail=True)
    with pytest.raises(DatasetFileError, match=r"downloading Fashion-MNIST .* failed"):
        fm.locate_files("train", root=None, cache_dir=tmp_path / "cache", download=True)


@pytest.mark.parametrize(
    ("loader", "split"), [(fm.load_train_arrays, "train"), (fm.load_test_arrays, "test")]
)
def test_load_arrays_returns_verified_tensors(
    tmp_path: Path, fake_fmnist: FakeFashionMNIST, loader: Any, split: str
) -> None:
    root = fake_fmnist.write(tmp_path / "root", splits=(split,))
    images, labels = loader(root=root, cache_dir=tmp_path / "cache", download=False)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    np.testing.assert_array_equal(images.numpy(), fake_fmnist.arrays[(split, "images")])
    np.testing.assert_array_equal(labels.numpy(), fake_fmnist.arrays[(split, "labels")])


def test_train_path_never_reads_test_files(tmp_path: Path, fake_fmnist: FakeFashionMNIST) -> None:
    root = fake_fmnist.write(tmp_path / "root", splits=("train",))
    images, _ = fm.load_train_arrays(root=root, cache_dir=tmp_path / "cache", download=False)
    assert len(images) == 200
    assert not list((tmp_path / "cache").rglob("t10k*"))


def test_corrupt_source_fails_checksum(tmp_path: Path, fake_fmnist: FakeFashionMNIST) -> None:
    root = fake_fmnist.write(tmp_path / "root")
    wrong = fake_fmnist.arrays[("train", "labels")].copy()
    wrong[0] = (wrong[0] + 1) % 10
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_labels(wrong)))
    with pytest.raises(DatasetFileError, match="expected sha256"):
        fm.load_train_arrays(root=root, cache_dir=tmp_path / "cache", download=False)


def _idx_labels(labels: np.ndarray) -> bytes:
    return (0x801).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.tobytes()


def _forbid_gzip(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the decoded cache should have been used")

    monkeypatch.setattr(gzip, "open", refuse)


def _count_gzip(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    opened: list[object] = []
    real_open = gzip.open

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(gzip, "open", counting)
    return opened


def test_second_load_uses_decoded_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fmnist: FakeFashionMNIST
) -> None:
    root, cache = fake_fmnist.write(tmp_path / "root"), tmp_path / "cache"
    first = fm.load_train_arrays(root=root, cache_dir=cache, download=False)
    decoded = cache / "decoded"
    assert sorted(p.name for p in decoded.iterdir()) == [
        "train-images-idx3-ubyte.json",
        "train-images-idx3-ubyte.npy",
        "train-labels-idx1-ubyte.json",
        "train-labels-idx1-ubyte.npy",
    ]
    manifest = json.loads((decoded / "train-images-idx3-ubyte.json").read_text())
    assert manifest["source"] == str((root / "train-images-idx3-ubyte.gz").resolve())
    _forbid_gzip(monkeypatch)
    second = fm.load_train_arrays(root=root, cache_dir=cache, download=False)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize("damage", ["flip-a-byte", "not-npy", "wrong-shape"])
def test_corrupt_cache_is_rebuilt(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fake_fmnist: FakeFashionMNIST,
    damage: str,
) -> None:
    root, cache = fake_fmnist.write(tmp_path / "root"), tmp_path / "cache"
    fm.load_train_arrays(root=root, cache_dir=cache, download=False)
    npy = cache / "decoded" / "train-images-idx3-ubyte.npy"
    if damage == "flip-a-byte":
        raw = bytearray(npy.read_bytes())
        raw[-1] ^= 0xFF
        npy.write_bytes(bytes(raw))
    elif damage == "not-npy":
        npy.write_bytes(b"garbage")
    else:
        np.save(npy, np.zeros((3, 28, 28), np.uint8))
    opened = _count_gzip(monkeypatch)
    with caplog.at_level(logging.INFO, logger="data.fashion_mnist"):
        images, _ = fm.load_train_arrays(root=root, cache_dir=cache, download=False)
    np.testing.assert_array_equal(images.numpy(), fake_fmnist.arrays[("train", "images")])
    assert opened == [root / "train-images-idx3-ubyte.gz"]  # labels still came from the cache
    assert "rebuilding" in caplog.text
    np.testing.assert_array_equal(np.load(npy), fake_fmnist.arrays[("train", "images")])


def test_changed_source_invalidates_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_fmnist: FakeFashionMNIST
) -> None:
    root, cache = fake_fmnist.write(tmp_path / "root"), tmp_path / "cache"
    fm.load_train_arrays(root=root, cache_dir=cache, download=False)
    source = root / "train-labels-idx1-ubyte.gz"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    opened = _count_gzip(monkeypatch)
    fm.load_train_arrays(root=root, cache_dir=cache, download=False)
    assert opened == [source]


def test_unwritable_cache_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fake_fmnist: FakeFashionMNIST
) -> None:
    root = fake_fmnist.write(tmp_path / "root")
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")  # mkdir under it fails even for root
    with caplog.at_level(logging.WARNING, logger="data.fashion_mnist"):
        images, _ = fm.load_train_arrays(root=root, cache_dir=blocker, download=False)
    assert len(images) == 200
    assert "could not write the decoded cache" in caplog.text


def test_no_temp_files_left_behind(tmp_path: Path, fake_fmnist: FakeFashionMNIST) -> None:
    root, cache = fake_fmnist.write(tmp_path / "root"), tmp_path / "cache"
    fm.load_train_arrays(root=root, cache_dir=cache, download=False)
    assert not [p for p in (cache / "decoded").iterdir() if p.suffix == ".tmp"]


def test_published_table_matches_data_md() -> None:
    # Guard the single source of truth against an accidental edit.
    assert fm.FILES[("train", "images")].sha256.startswith("c59f468a")
    assert fm.FILES[("test", "labels")].sha256.startswith("0402a96d")
    assert fm.FILES[("train", "images")].shape == (60000, 28, 28)
    assert fm.FILES[("test", "images")].shape == (10000, 28, 28)
    assert len(fm.CLASS_NAMES) == fm.NUM_CLASSES == 10
    assert fm.CLASS_NAMES[0] == "T-shirt/top" and fm.CLASS_NAMES[-1] == "Ankle boot"
