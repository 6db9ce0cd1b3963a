"""Accuracy parity of bf16 autocast against fp32: the 3-epoch SeedCNN recipe over seeds.

Runs `time_to_accuracy.py`'s recipe (validation split only, never the test set) once per
seed and precision, in one process, and compares the mean validation accuracies. The
target: the bf16 mean within 0.3 points of the fp32 mean. Results are measurements, never
assertions: exit status is 0.

    .venv/bin/python bench/precision_parity.py [--seeds 0 1 2] [--precisions fp32 bf16]
        [--json bench/results/precision_parity.json]
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path
from typing import Any

import time_to_accuracy
from report import publish
from rich.console import Console
from rich.table import Table

log = logging.getLogger("bench.precision_parity")

TARGET_POINTS = 0.3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precisions", nargs=2, default=["fp32", "bf16"], metavar="P")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One recipe run per (precision, seed); the validation accuracy and seconds of each."""
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in args.precisions}
    for seed in args.seeds:
        for precision in args.precisions:
            recipe = time_to_accuracy.parse_args(
                ["--seed", str(seed), "--precision", precision, "--no-test"]
            )
            measured = time_to_accuracy.measure(recipe)
            runs[precision].append(
                {"seed": seed, "val_acc": measured["val_acc"], "train_s": measured["train_seconds"]}
            )
            log.info("%s seed %d: val %.4f", precision, seed, measured["val_acc"])
    base, other = args.precisions
    means = {p: statistics.mean(r["val_acc"] for r in runs[p]) for p in args.precisions}
    difference = (means[other] - means[base]) * 100
    return {
        "benchmark": "precision_parity",
        "recipe": "time_to_accuracy defaults (SeedCNN, 3 epochs, adam 8e-3 onecycle, batch 256)",
        "runs": runs,
        "mean_val_acc": means,
        "difference_points": difference,
        "target_points": TARGET_POINTS,
        "target_met": abs(difference) <= TARGET_POINTS,
    }


def render(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Validation accuracy by precision: {summary['recipe']}")
    precisions = list(summary["runs"])
    for column in ("seed", *precisions, *(f"{p} train s" for p in precisions)):
        table.add_column(column, justify="right")
    for i, first in enumerate(summary["runs"][precisions[0]]):
        rows = [summary["runs"][p][i] for p in precisions]
        table.add_row(
            str(first["seed"]),
            *(f"{r['val_acc']:.2%}" for r in rows),
            *(f"{r['train_s']:.1f}" for r in rows),
        )
    table.add_row("mean", *(f"{summary['mean_val_acc'][p]:.2%}" for p in precisions), "", "")
    console.print(table)
    verdict = "met" if summary["target_met"] else "NOT met"
    console.print(
        f"{precisions[1]} - {precisions[0]}: {summary['difference_points']:+.2f} points; "
        f"target within {summary['target_points']}: {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = run(args)
    publish(summary, render, args.json)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
