"""`python -m data [--download]`: find and verify the four Fashion-MNIST files.

Used by `make data`: exits 0 and says where the files are when all four are present and
match their published checksums, exits 1 with the reason and the fix otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.fashion_mnist import FILES, locate_files
from data.idx import DatasetFileError, read_idx

# The same folder conf/data/fashion_mnist.yaml uses (the project's data cache).
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "fashion-mnist"


def main(argv: list[str] | None = None) -> int:
    """Locate and checksum the train and test files; print the outcome."""
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    parser.add_argument("--root", help="folder holding the four .gz files (else $FMNIST_DIR)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--download", action="store_true", help="let torchvision download")
    parser.add_argument("--quiet", action="store_true", help="print nothing when files are missing")
    args = parser.parse_args(argv)
    try:
        for split in ("train", "test"):
            paths = locate_files(
                split, root=args.root, cache_dir=args.cache_dir, download=args.download
            )
            for path, kind in zip(paths, ("images", "labels"), strict=True):
                # Checksum only: nothing here keeps or uses the test images.
                read_idx(path, expected_sha256=FILES[(split, kind)].sha256)
    except DatasetFileError as exc:
        if not args.quiet:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST verified in {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
