"""Training throughput of SeedCNN on this CPU: a torchvision DataLoader pipeline vs ours.

Both pipelines feed the same 50k train split, the same seeded SeedCNN and Adam (conf/ defaults)
through the project's own training step (`hpo.trainer.train_one_epoch`), in one process:

- conventional: torchvision `datasets.FashionMNIST` (pointed at decompressed copies of the
  local files; our `FashionMNISTDataset` if torchvision refuses them) restricted to the train
  split, per-sample PIL transforms (`ToTensor`, `Normalize`, and the torchvision equivalents of
  the augmentation), `torch.utils.data.DataLoader` with `num_workers` 0 and 1, contiguous.
- ours: `DataSplits.train_loader(channels_last=True)`, in-memory uint8 batches, with the model
  in channels_last.

Each is timed twice: training steps (forward + backward + step) and the loader alone, so the
source of any gain is visible. Results are measurements, never assertions: exit status is 0.

    .venv/bin/python bench/throughput.py [--batches 200 | --epoch] [--augmentation none]
                                         [--batch-size 128] [--json bench/results/throughput.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from data import BatchAugment, DataSplits, FashionMNISTDataset, stratified_split
from data.fashion_mnist import locate_files
from hpo.devices import configure_threads
from hpo.paths import PROJECT_ROOT
from hpo.resolvers import register_resolvers
from hpo.seeding import seed_everything
from hpo.trainer import TrainSettings, train_one_epoch

log = logging.getLogger("bench.throughput")

AUGMENTATIONS = ("none", "flip_crop", "flip_crop_erase")
TARGET_RATIO = 1.5  # the target: ours >= 1.5x the best conventional variant
WARMUP_BATCHES = 20
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Measurement:
    """One pipeline's figures: training steps and loader-only, in images per second."""

    pipeline: str
    train_images: int
    train_seconds: float
    train_images_per_s: float
    data_images: int
    data_seconds: float
    data_images_per_s: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=_positive_int, default=200, help="timed batches")
    parser.add_argument(
        "--epoch", action="store_true", help="time one full epoch instead of --batches"
    )
    parser.add_argument("--batch-size", type=_positive_int, default=128)
    parser.add_argument("--augmentation", choices=AUGMENTATIONS, default="none")
    parser.add_argument("--seed", type=int, default=42, help="model init, shuffling, augmentation")
    parser.add_argument(
        "--workers",
        type=_non_negative_int,
        nargs="+",
        default=[0, 1],
        help="DataLoader num_workers variants of the conventional pipeline (default: 0 1)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text}")
    return value


def compose_config(augmentation: str) -> DictConfig:
    """The project config with SeedCNN, Adam and `augmentation`: conf/ stays the one source."""
    register_resolvers()
    overrides = ["model=seed_cnn", "optimizer=adam", f"augmentation={augmentation}"]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def torchvision_transform(augment: BatchAugment, mean: float, std: float) -> transforms.Compose:
    """The per-sample torchvision equivalent of `augment` followed by normalisation."""
    steps: list[Callable[[Any], Any]] = []
    if augment.flip:
        steps.append(transforms.RandomHorizontalFlip())
    if augment.crop_padding:
        # Ours pads after normalising with zeros, i.e. with the mean pixel; match it here.
        fill = round(mean * 255)
        steps.append(transforms.RandomCrop(28, padding=augment.crop_padding, fill=fill))
    steps += [transforms.ToTensor(), transforms.Normalize((mean,), (std,))]
    if augment.erase_prob > 0:
        steps.append(
            transforms.RandomErasing(
                p=augment.erase_prob,
                scale=augment.erase_scale,
                ratio=augment.erase_ratio,
                value=augment.erase_value,
            )
        )
    return transforms.Compose(steps)


def conventional_dataset(
    cfg: DictConfig, splits: DataSplits, transform: transforms.Compose, workdir: Path
) -> tuple[Dataset[Any], str]:
    """torchvision's FashionMNIST over the train split, or our Dataset if torchvision refuses.

    torchvision only checks that the four decompressed files exist in
    `<root>/FashionMNIST/raw/` (the md5 of the Debian-recompressed .gz is checked on download
    only), so decompressed copies of the local files are enough and nothing is downloaded.
    It insists on the test files being present too, though with `train=True` it never reads
    them.
    """
    raw = workdir / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "test"):
        found = locate_files(
            split, root=cfg.data.root, cache_dir=Path(cfg.data.cache_dir), download=False
        )
        for source in found:
            _decompress(source, raw / source.name.removesuffix(".gz"))
    try:
        full = datasets.FashionMNIST(str(workdir), train=True, transform=transform, download=False)
    except RuntimeError as exc:
        log.warning("torchvision FashionMNIST refused the local files (%s): using ours", exc)
        return FashionMNISTDataset(splits.train_images, splits.train_labels, transform), "ours"
    train_idx, _ = stratified_split(full.targets, cfg.data.val_size, cfg.data.split_seed)
    if not torch.equal(full.data[train_idx].unsqueeze(1), splits.train_images):
        raise RuntimeError("torchvision's train split differs from ours; the comparison is void")
    return Subset(full, train_idx.tolist()), "torchvision.datasets.FashionMNIST"


def _decompress(source: Path, target: Path) -> None:
    opener: Callable[..., Any] = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)


def _stream(loader: Iterable[Batch]) -> Iterator[Batch]:
    # Epoch after epoch, so --batches may exceed one epoch; workers persist within an epoch.
    while True:
        yield from loader


def time_pipeline(
    name: str,
    loader: Iterable[Batch],
    make_model: Callable[[], torch.nn.Module],
    cfg: DictConfig,
    args: argparse.Namespace,
) -> Measurement:
    """Time `loader` alone, then training steps on it, each after a warm-up."""
    data_images, data_seconds = _timed(loader, args, step=None)
    model = make_model()
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    settings = TrainSettings(epochs=1, progress=False)

    def step(batches: Iterable[Batch]) -> int:
        return train_one_epoch(model, batches, optimizer, None, settings)[2]

    train_images, train_seconds = _timed(loader, args, step=step)
    result = Measurement(
        pipeline=name,
        train_images=train_images,
        train_seconds=train_seconds,
        train_images_per_s=train_images / train_seconds,
        data_images=data_images,
        data_seconds=data_seconds,
        data_images_per_s=data_images / data_seconds,
    )
    log.info("%s: %s", name, result)
    return result


def _timed(
    loader: Iterable[Batch],
    args: argparse.Namespace,
    step: Callable[[Iterable[Batch]], int] | None,
) -> tuple[int, float]:
    """(images, seconds) for the timed batches; `step=None` times the loader alone."""
    run = step if step is not None else _drain
    stream = _stream(loader)
    run(islice(stream, WARMUP_BATCHES))
    # With --epoch the timed part is a fresh epoch, so it includes starting the workers.
    timed = loader if args.epoch else islice(stream, args.batches)
    start = time.perf_counter()
    images = run(timed)
    return images, time.perf_counter() - start


def _drain(batches: Iterable[Batch]) -> int:
    return sum(y.shape[0] for _, y in batches)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every pipeline and return the results as a JSON-ready dict."""
    threads = configure_threads(None)
    cfg = compose_config(args.augmentation)
    splits = instantiate(cfg.data).setup()
    augment = instantiate(cfg.augmentation)

    def make_model(memory_format: torch.memory_format) -> Callable[[], torch.nn.Module]:
        def build() -> torch.nn.Module:
            seed_everything(args.seed)  # the same initial weights for every pipeline
            return instantiate(cfg.model).to(memory_format=memory_format)

        return build

    transform = torchvision_transform(augment, splits.mean, splits.std)
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as workdir:
        dataset, source = conventional_dataset(cfg, splits, transform, Path(workdir))
        for workers in args.workers:
            loader = DataLoader(
                dataset,
                batch_size=args.batch_size,
                shuffle=True,
                num_workers=workers,
                generator=torch.Generator().manual_seed(args.seed),
            )
            name = f"conventional, workers={workers}"
            results.append(
                time_pipeline(name, loader, make_model(torch.contiguous_format), cfg, args)
            )
    # Contiguous first, for information: it separates the loader's gain from channels_last's.
    for channels_last in (False, True):
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        ours = splits.train_loader(
            batch_size=args.batch_size,
            seed=args.seed,
            augment=augment,
            device="cpu",
            channels_last=channels_last,
        )
        name = f"ours, {'channels_last' if channels_last else 'contiguous'}"
        results.append(time_pipeline(name, ours, make_model(memory_format), cfg, args))
    return _summary(args, threads, source, results)


def _summary(
    args: argparse.Namespace, threads: int, source: str, results: list[Measurement]
) -> dict[str, Any]:
    ours = results[-1]  # channels_last, the configuration train.py uses by default
    conventional = [m for m in results if m.pipeline.startswith("conventional")]
    best = max(conventional, key=lambda m: m.train_images_per_s)
    ratio = ours.train_images_per_s / best.train_images_per_s
    return {
        "benchmark": "throughput",
        "model": "SeedCNN",
        "batch_size": args.batch_size,
        "augmentation": args.augmentation,
        "timed": "one epoch" if args.epoch else f"{args.batches} batches",
        "warmup_batches": WARMUP_BATCHES,
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "conventional_dataset": source,
        "results": [asdict(m) for m in results],
        "best_conventional": best.pipeline,
        "ratio_ours_vs_best_conventional": ratio,
        "data_ratio_ours_vs_best_conventional": ours.data_images_per_s / best.data_images_per_s,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
    }


def render(summary: dict[str, Any], console: Console) -> None:
    """Print the results table and the verdict on the target."""
    table = Table(
        title=f"SeedCNN training throughput, batch {summary['batch_size']}, "
        f"augmentation {summary['augmentation']}, {summary['timed']}, "
        f"{summary['torch_threads']} threads"
    )
    for column in ("pipeline", "train img/s", "train s", "data-only img/s", "data-only s"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    for m in summary["results"]:
        table.add_row(
            m["pipeline"],
            f"{m['train_images_per_s']:,.0f}",
            f"{m['train_seconds']:.2f}",
            f"{m['data_images_per_s']:,.0f}",
            f"{m['data_seconds']:.2f}",
        )
    console.print(table)
    console.print(f"conventional dataset: {summary['conventional_dataset']}")
    verdict = "met" if summary["target_met"] else "NOT met"
    console.print(
        f"ours / best conventional ({summary['best_conventional']}): "
        f"{summary['ratio_ours_vs_best_conventional']:.2f}x training, "
        f"{summary['data_ratio_ours_vs_best_conventional']:.1f}x data-only; "
        f"target >= {summary['target_ratio']}x: {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, optionally write JSON; always returns 0."""
    args = parse_args(argv)
    if any(w > 1 for w in args.workers):
        # The parent trains on both cores; more workers only fight it for them.
        log.warning("--workers %s: values above 1 oversubscribe a 2-core CPU", args.workers)
    summary = run_benchmark(args)
    # Off a terminal rich assumes 80 columns, which wraps the table in logs.
    render(summary, Console() if sys.stdout.isatty() else Console(width=110))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
