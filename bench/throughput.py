"""Training throughput of SeedCNN on this CPU: a torchvision DataLoader pipeline vs ours.

Both pipelines feed the same 50k train split, the same seeded SeedCNN and Adam (conf/ defaults)
through the project's own training step (`hpo.training.loop.train_one_epoch`), in one process:

- conventional: torchvision `datasets.FashionMNIST` (pointed at decompressed copies of the
  local files; our `FashionMNISTDataset` if torchvision refuses them) restricted to the train
  split, per-sample PIL transforms (`ToTensor`, `Normalize`, and the torchvision equivalents of
  the augmentation), `torch.utils.data.DataLoader` with `num_workers` 0 and 1 (full batches
  only, as ours), contiguous.
- ours: `DataSplits.train_loader(channels_last=True)`, in-memory uint8 batches, with the model
  in channels_last; in fp32, and at `trainer.precision=auto` (bf16 autocast on a CPU with
  native bf16), which is what `train.py` runs by default and what the ratio uses.

Each is timed twice: training steps (forward + backward + step) and the loader alone, so the
source of any gain is visible. Results are measurements, never assertions: exit status is 0.

    .venv/bin/python bench/throughput.py [--batches 200 | --epoch] [--augmentation none]
                                         [--batch-size 128] [--json bench/results/throughput.json]
"""

from __future__ import annotations

import argparse
import gzip
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from cli_types import non_negative_int, positive_int
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from report import publish
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from data import BatchAugment, DataSplits, FashionMNISTDataset, stratified_split
from data.fashion_mnist import locate_files
from hpo.paths import PROJECT_ROOT
from hpo.schema import register_configs
from hpo.training.allocator import keep_freed_memory
from hpo.training.devices import configure_threads
from hpo.training.loop import TrainSettings, train_one_epoch
from hpo.training.precision import FP32, Precision, resolve_precision
from hpo.training.seeding import seed_everything

log = logging.getLogger("bench.throughput")

AUGMENTATIONS = ("none", "flip_crop", "flip_crop_erase")
# The target: ours at precision=auto >= 2.5x the best conventional (fp32) variant.
TARGET_RATIO = 2.5
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
    parser.add_argument("--batches", type=positive_int, default=200, help="timed batches")
    parser.add_argument(
        "--epoch", action="store_true", help="time one full epoch instead of --batches"
    )
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="interleaved rounds over all pipelines"
    )
    parser.add_argument("--augmentation", choices=AUGMENTATIONS, default="none")
    parser.add_argument("--seed", type=int, default=42, help="model init, shuffling, augmentation")
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        nargs="+",
        default=[0, 1],
        help="DataLoader num_workers variants of the conventional pipeline (default: 0 1)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def compose_config(augmentation: str) -> DictConfig:
    """The project config with SeedCNN, Adam and `augmentation`: conf/ stays the one source."""
    register_configs()
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


@dataclass
class Pipeline:
    """A loader and the model layout it feeds."""

    name: str
    loader: Iterable[Batch]
    memory_format: torch.memory_format
    precision: Precision = FP32


def time_pipeline(pipeline: Pipeline, cfg: DictConfig, args: argparse.Namespace) -> Measurement:
    """Time the loader alone, then training steps on it, each after a warm-up."""
    data_images, data_seconds = _timed(pipeline.loader, args, step=None)
    seed_everything(args.seed)  # the same initial weights for every pipeline and round
    model = instantiate(cfg.model).to(memory_format=pipeline.memory_format)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    settings = TrainSettings(epochs=1, progress=False, precision=pipeline.precision)
    scaler = pipeline.precision.grad_scaler()  # one for all steps, as fit makes one per run

    def step(batches: Iterable[Batch]) -> int:
        return train_one_epoch(
            model,
            batches,
            optimizer=optimizer,
            scheduler=None,
            settings=settings,
            epoch=1,
            scaler=scaler,
            ema=None,
        )[2]

    train_images, train_seconds = _timed(pipeline.loader, args, step=step)
    result = Measurement(
        pipeline=pipeline.name,
        train_images=train_images,
        train_seconds=train_seconds,
        train_images_per_s=train_images / train_seconds,
        data_images=data_images,
        data_seconds=data_seconds,
        data_images_per_s=data_images / data_seconds,
    )
    log.info("%s", result)
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


def build_pipelines(
    cfg: DictConfig, splits: DataSplits, args: argparse.Namespace, workdir: Path
) -> tuple[list[Pipeline], str]:
    """The conventional variants, ours contiguous and channels_last, then ours at auto (last)."""
    augment = instantiate(cfg.augmentation)
    transform = torchvision_transform(augment, splits.mean, splits.std)
    dataset, source = conventional_dataset(cfg, splits, transform, workdir)
    pipelines = [
        Pipeline(
            f"conventional, workers={workers}",
            DataLoader(
                dataset,
                batch_size=args.batch_size,
                shuffle=True,
                num_workers=workers,
                generator=torch.Generator().manual_seed(args.seed),
                # Full batches, as ours: one smaller batch slows every later CPU step of the
                # process (bench/README.md), which would tax whichever pipeline runs next.
                drop_last=True,
            ),
            torch.contiguous_format,
        )
        for workers in args.workers
    ]
    # Ours contiguous too, for information: it separates the loader's gain from the layout's.
    for channels_last in (False, True):
        loader = splits.train_loader(
            batch_size=args.batch_size,
            seed=args.seed,
            augment=augment,
            device="cpu",
            channels_last=channels_last,
        )
        layout = "channels_last" if channels_last else "contiguous"
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        pipelines.append(Pipeline(f"ours, {layout}", loader, memory_format))
    auto = resolve_precision("auto", torch.device("cpu"))
    name = f"ours, channels_last, precision=auto ({auto.name})"
    pipelines.append(Pipeline(name, pipelines[-1].loader, torch.channels_last, auto))
    return pipelines, source


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every pipeline `--repeats` times and return the JSON-ready results."""
    threads = configure_threads(None)
    keep_freed_memory()  # as train.py: the same allocator for every pipeline
    cfg = compose_config(args.augmentation)
    splits = instantiate(cfg.data).setup()
    # torchvision reads the files into memory at construction; the folder can go after that.
    with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as workdir:
        pipelines, source = build_pipelines(cfg, splits, args, Path(workdir))
    runs: dict[str, list[Measurement]] = {p.name: [] for p in pipelines}
    # Rounds interleave the pipelines, so a burst of load from elsewhere hits them alike.
    for round_ in range(1, args.repeats + 1):
        log.info("round %d/%d", round_, args.repeats)
        for pipeline in pipelines:
            runs[pipeline.name].append(time_pipeline(pipeline, cfg, args))
    return _summary(args, threads, source, runs)


def _summary(
    args: argparse.Namespace, threads: int, source: str, runs: dict[str, list[Measurement]]
) -> dict[str, Any]:
    rows = [_aggregate(name, measured) for name, measured in runs.items()]
    ours = rows[-1]  # channels_last at precision=auto: what train.py uses by default
    fp32 = rows[-2]  # the same in fp32, for the part of the gain that bf16 brings
    best = max((r for r in rows if r["pipeline"].startswith("conventional")), key=_best_train)
    ratio = ours["train_images_per_s_best"] / best["train_images_per_s_best"]
    return {
        "benchmark": "throughput",
        "model": "SeedCNN",
        "batch_size": args.batch_size,
        "augmentation": args.augmentation,
        "timed": "one epoch" if args.epoch else f"{args.batches} batches",
        "warmup_batches": WARMUP_BATCHES,
        "repeats": args.repeats,
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "conventional_dataset": source,
        "results": rows,
        "best_conventional": best["pipeline"],
        "ratio_ours_vs_best_conventional": ratio,
        "ratio_median": ours["train_images_per_s_median"] / best["train_images_per_s_median"],
        "ratio_fp32_ours_vs_best_conventional": fp32["train_images_per_s_best"]
        / best["train_images_per_s_best"],
        "data_ratio_ours_vs_best_conventional": ours["data_images_per_s_best"]
        / best["data_images_per_s_best"],
        "target_ratio": TARGET_RATIO,
        "target_met": ratio >= TARGET_RATIO,
    }


def _aggregate(name: str, measured: list[Measurement]) -> dict[str, Any]:
    # Best of the rounds is the least disturbed; the median shows how much noise there was.
    train = [m.train_images_per_s for m in measured]
    data = [m.data_images_per_s for m in measured]
    return {
        "pipeline": name,
        "train_images_per_s_best": max(train),
        "train_images_per_s_median": statistics.median(train),
        "data_images_per_s_best": max(data),
        "data_images_per_s_median": statistics.median(data),
        "runs": [asdict(m) for m in measured],
    }


def _best_train(row: dict[str, Any]) -> float:
    return float(row["train_images_per_s_best"])


def render(summary: dict[str, Any], console: Console) -> None:
    """Print the results table and the verdict on the target."""
    table = Table(
        title=f"SeedCNN training throughput, batch {summary['batch_size']}, "
        f"augmentation {summary['augmentation']}, {summary['timed']}, "
        f"{summary['torch_threads']} threads, best and median of {summary['repeats']} rounds"
    )
    columns = ("pipeline", "train img/s best", "median", "data-only img/s best", "median")
    for column in columns:
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    for row in summary["results"]:
        table.add_row(
            row["pipeline"],
            f"{row['train_images_per_s_best']:,.0f}",
            f"{row['train_images_per_s_median']:,.0f}",
            f"{row['data_images_per_s_best']:,.0f}",
            f"{row['data_images_per_s_median']:,.0f}",
        )
    console.print(table)
    console.print(f"conventional dataset: {summary['conventional_dataset']}")
    verdict = "met" if summary["target_met"] else "NOT met"
    console.print(
        f"ours / best conventional ({summary['best_conventional']}): "
        f"{summary['ratio_ours_vs_best_conventional']:.2f}x training "
        f"(medians: {summary['ratio_median']:.2f}x; fp32 alone "
        f"{summary['ratio_fp32_ours_vs_best_conventional']:.2f}x), "
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
    publish(summary, render, args.json)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
