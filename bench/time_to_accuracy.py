"""Time to 90.17% Fashion-MNIST test accuracy with SeedCNN on this CPU, from process start.

A recipe fixed in advance (the command-line options; defaults chosen on the validation split)
trains SeedCNN on the 50k train split with the in-memory pipeline; the last epoch's model is
evaluated once on the validation split and once on the official 10k test set. Nothing is
chosen by test accuracy. Clocks: "from process start" adds the interpreter's own start-up
(read from /proc/self/stat on Linux) to "from script start" (the first line of this file, before
torch is imported). Results are measurements, never assertions: exit status is 0.

    .venv/bin/python bench/time_to_accuracy.py [--epochs 3] [--batch-size 256] [--lr 0.008]
        [--optimizer adam|adamw] [--scheduler none|onecycle] [--precision auto|fp32|bf16|fp16]
        [--device cpu|auto|cuda] [--json PATH] [--no-test]
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the heavy imports: importing torch counts


def _process_age() -> float | None:
    """Seconds since this process started (Linux /proc), or None where unavailable."""
    import os

    try:
        with open("/proc/self/stat") as f:
            # Field 22 (starttime, clock ticks after boot); the command name may hold spaces.
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


PROCESS_AGE_AT_START = _process_age()

# The imports below are timed on purpose, hence not at the top of the file.
import argparse  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from cli_types import positive_float, positive_int  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from report import publish  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from data import DataSplits, TensorBatchLoader  # noqa: E402
from hpo.paths import PROJECT_ROOT  # noqa: E402
from hpo.schema import register_configs  # noqa: E402
from hpo.training.allocator import keep_freed_memory  # noqa: E402
from hpo.training.devices import configure_threads, resolve_device  # noqa: E402
from hpo.training.loop import TrainSettings, evaluate, fit  # noqa: E402
from hpo.training.precision import PRECISION_CHOICES, Precision, resolve_precision  # noqa: E402
from hpo.training.schedulers import onecycle  # noqa: E402
from hpo.training.seeding import seed_everything  # noqa: E402

log = logging.getLogger("bench.time_to_accuracy")

TARGET_ACC = 0.9017  # the plain PyTorch CNN this project started from
TARGET_SECONDS = 30.0
TARGET_PEAK_MB = 2048.0
EVAL_BATCH_SIZE = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The recipe and output options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--lr", type=positive_float, default=0.008, help="peak lr with onecycle")
    parser.add_argument("--optimizer", choices=("adam", "adamw"), default="adam")
    parser.add_argument("--scheduler", choices=("none", "onecycle"), default="onecycle")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--precision", choices=PRECISION_CHOICES, default="auto", help="as trainer.precision"
    )
    parser.add_argument(
        "--device", default="cpu", help="as trainer.device (auto picks cuda, then mps, then cpu)"
    )
    parser.add_argument(
        "--no-test",
        action="store_true",
        help="skip the test set (for comparing recipes on the validation split only)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def compose_config(args: argparse.Namespace) -> DictConfig:
    """The project config for SeedCNN with the recipe's optimizer: conf/ stays the one source."""
    register_configs()
    overrides = [
        "model=seed_cnn",
        f"optimizer={args.optimizer}",
        f"optimizer.lr={args.lr}",
        "augmentation=none",
        "tracking=none",
    ]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def train(
    cfg: DictConfig,
    args: argparse.Namespace,
    splits: DataSplits,
    device: torch.device,
    precision: Precision,
) -> tuple[torch.nn.Module, float]:
    """Train for the fixed number of epochs; returns (model after the last epoch, seconds)."""
    batches = splits.train_loader(
        batch_size=args.batch_size, seed=args.seed, augment=None, device=device
    )
    model = instantiate(cfg.model).to(device, memory_format=torch.channels_last)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    scheduler = None
    if args.scheduler == "onecycle":
        total = args.epochs * len(batches)
        pct = float(cfg.scheduler.pct_start)  # conf/scheduler/onecycle.yaml
        scheduler = onecycle(optimizer, total_steps=total, max_lr=args.lr, pct_start=pct)
    settings = TrainSettings(epochs=args.epochs, progress=False, precision=precision)
    start = time.perf_counter()
    # The trials' own loop, without validation: it trains every epoch and keeps the last.
    result = fit(model, batches, None, optimizer=optimizer, scheduler=scheduler, settings=settings)
    seconds = time.perf_counter() - start
    model.load_state_dict(result.best_state)
    return model, seconds


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the recipe end to end and collect every figure the report needs."""
    threads = configure_threads(None)
    keep_freed_memory()
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    log.info("training on %s (%s)", device, precision.name)
    cfg = compose_config(args)
    seed_everything(args.seed)
    data = instantiate(cfg.data)
    splits = data.setup()
    model, train_seconds = train(cfg, args, splits, device, precision)
    val = splits.val_loader(batch_size=EVAL_BATCH_SIZE, device=device)
    _, val_acc = evaluate(model, val, precision)
    test_acc: float | None = None
    if not args.no_test:
        images, labels = data.load_test()  # the one read of the test set, after training
        test = TensorBatchLoader(
            images,
            labels,
            batch_size=EVAL_BATCH_SIZE,
            mean=splits.mean,
            std=splits.std,
            shuffle=False,
            device=device,
        )
        _, test_acc = evaluate(model, test, precision)
    script_seconds = time.perf_counter() - START
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    summary = _summary(args, threads, train_seconds, script_seconds, val_acc, test_acc, peak_mb)
    summary.update(
        device=str(device),
        precision=precision.name,
        images_per_second=args.epochs * splits.train_labels.shape[0] / train_seconds,
    )
    if device.type == "cuda":
        summary["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return summary


def _summary(
    args: argparse.Namespace,
    threads: int,
    train_seconds: float,
    script_seconds: float,
    val_acc: float,
    test_acc: float | None,
    peak_mb: float,
) -> dict[str, Any]:
    process_seconds = (
        None if PROCESS_AGE_AT_START is None else script_seconds + PROCESS_AGE_AT_START
    )
    wall = process_seconds if process_seconds is not None else script_seconds
    return {
        "benchmark": "time_to_accuracy",
        "model": "SeedCNN",
        "recipe": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "scheduler": args.scheduler,
            "seed": args.seed,
            "channels_last": True,
            "train_split": "50k train (validation held out)",
        },
        "torch_threads": threads,
        "train_seconds": train_seconds,
        "seconds_from_script_start": script_seconds,
        "seconds_from_process_start": process_seconds,
        "val_acc": val_acc,
        "test_acc": test_acc,
        "peak_rss_mb": peak_mb,
        "targets": {"test_acc": TARGET_ACC, "seconds": TARGET_SECONDS, "peak_mb": TARGET_PEAK_MB},
        "met": {
            "test_acc": None if test_acc is None else test_acc >= TARGET_ACC,
            "seconds": wall <= TARGET_SECONDS,
            "peak_mb": peak_mb < TARGET_PEAK_MB,
        },
    }


def render(summary: dict[str, Any], console: Console) -> None:
    """Print the figures next to their targets."""
    r = summary["recipe"]
    table = Table(
        title=f"SeedCNN time to accuracy: {r['epochs']} epochs, batch {r['batch_size']}, "
        f"{r['optimizer']} lr {r['lr']}, scheduler {r['scheduler']}, "
        f"{summary['device']} {summary['precision']}, {summary['torch_threads']} threads"
    )
    for column in ("figure", "value", "target", "met"):
        table.add_column(column)
    met, targets = summary["met"], summary["targets"]
    process = summary["seconds_from_process_start"]
    test = summary["test_acc"]
    rows = [
        ("train seconds", f"{summary['train_seconds']:.1f}", "", ""),
        ("train images/s", f"{summary['images_per_second']:,.0f}", "", ""),
        ("wall s from script start", f"{summary['seconds_from_script_start']:.1f}", "", ""),
        (
            "wall s from process start",
            "n/a" if process is None else f"{process:.1f}",
            f"<= {targets['seconds']:.0f}",
            _yes_no(met["seconds"]),
        ),
        ("val accuracy", f"{summary['val_acc']:.2%}", "", ""),
        (
            "test accuracy",
            "skipped" if test is None else f"{test:.2%}",
            f">= {targets['test_acc']:.2%}",
            _yes_no(met["test_acc"]),
        ),
        (
            "peak RSS MB",
            f"{summary['peak_rss_mb']:.0f}",
            f"< {targets['peak_mb']:.0f}",
            _yes_no(met["peak_mb"]),
        ),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, optionally write JSON; always returns 0."""
    args = parse_args(argv)
    summary = measure(args)
    publish(summary, render, args.json)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    raise SystemExit(main())
