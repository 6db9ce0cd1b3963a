"""`make predict IMAGES="a.png b.png"`: classify images with the registered champion model.

Each image is turned into what Fashion-MNIST looks like: 28x28 grayscale, dark background,
light article, the article's longest side filling the frame.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from PIL import Image, ImageOps, UnidentifiedImageError

from data import CLASS_NAMES
from hpo.errors import UsageError
from hpo.paths import PROJECT_ROOT
from hpo.schema import register_configs
from hpo.tracking.registry import load_champion
from hpo.urls import SecretUrl

SIZE = 28
# Pixels differing from the background by more than this belong to the article.
_FOREGROUND_THRESHOLD = 24


class ImageError(UsageError, ValueError):
    """A file that cannot be used as an input image."""


def to_fashion_mnist(image: Image.Image) -> torch.Tensor:
    """float32 (1, 28, 28) raw pixels 0-255, light article on a dark background."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, image)  # transparency -> white background
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    if _border(gray).mean() > 127:  # photos and drawings: dark article on a light background
        gray = 255.0 - gray
    background = float(np.median(_border(gray)))
    mask = np.abs(gray - background) > _FOREGROUND_THRESHOLD
    if mask.any():
        rows, cols = np.where(mask.any(axis=1))[0], np.where(mask.any(axis=0))[0]
        gray = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    article = Image.fromarray(np.clip(gray - background, 0, 255).astype(np.uint8))
    article = ImageOps.contain(article, (SIZE, SIZE), Image.Resampling.LANCZOS)
    frame = Image.new("L", (SIZE, SIZE), 0)
    frame.paste(article, ((SIZE - article.width) // 2, (SIZE - article.height) // 2))
    return torch.from_numpy(np.asarray(frame, dtype=np.float32).copy()).unsqueeze(0)


def _border(gray: np.ndarray) -> np.ndarray:
    return np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])


def load_image(path: Path) -> torch.Tensor:
    """Open `path` and convert it; ImageError names the file and the reason."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_fashion_mnist(image)
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: no such file") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc


def top_k(model: torch.nn.Module, pixels: torch.Tensor, k: int = 3) -> list[tuple[str, float]]:
    """The k most likely classes of one (1, 28, 28) image, with probabilities."""
    with torch.inference_mode():
        probs = model(pixels.unsqueeze(0)).softmax(dim=1)[0]
    values, indices = probs.topk(k)
    return [(CLASS_NAMES[i], float(p)) for p, i in zip(values, indices, strict=True)]


def _defaults() -> tuple[str, str]:
    """Tracking URI and model name from conf/ (the same ones best-eval uses)."""
    register_configs()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("best_eval")
    return str(cfg.tracking.uri), str(cfg.model_name)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the class and top-3 probabilities of each image; 1 if any file failed."""
    uri, name = _defaults()
    parser = argparse.ArgumentParser(prog="python -m hpo.retest.predict", description=__doc__)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--tracking-uri", default=uri)
    parser.add_argument("--model-name", default=name)
    args = parser.parse_args(argv)
    try:
        model = load_champion(SecretUrl(args.tracking_uri), args.model_name)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    failed = 0
    for path in args.images:
        try:
            ranked = top_k(model, load_image(path))
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        others = ", ".join(f"{c} {p:.1%}" for c, p in ranked[1:])
        print(f"{path}: {ranked[0][0]} {ranked[0][1]:.1%} ({others})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
