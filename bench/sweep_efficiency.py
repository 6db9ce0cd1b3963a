"""What pruning buys: the same Optuna search run through the real CLI, unpruned and pruned.

Runs `train.py -m hydra/sweeper=optuna` on the real data, for each sampler seed, twice with
the same search space and trial budget: once with `hydra/sweeper/pruner=none` and once with
the median pruner (the sweeper's default) and its settings from `--pruner-args` (e.g. a
warm-up: `n_warmup_steps=1 n_startup_trials=5`), each in a fresh study, Optuna storage, MLflow
store and sweep folder under a temporary directory. Afterwards each study is read back from
its storage and the wall time, trials complete/pruned/failed, epochs trained and best
validation accuracy are reported, with the speed-up (total wall time unpruned over pruned)
and the mean best accuracy of each over the seeds. Measurements only; the exit status is 1
only when a sweep itself fails (then there is nothing to compare).

    .venv/bin/python bench/sweep_efficiency.py [--n-trials 20] [--epochs 3]
        [--sampler-seeds 7 8 9] [--pruner-args n_warmup_steps=1 ...]
        [--train-subset 5000] [--extra 'model.width=choice(32,64)' ...] [--json PATH]

The full 20-trial version takes 40+ minutes on 2 CPU cores; a quick check:
`--n-trials 6 --epochs 2 --train-subset 5000`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from cli_types import positive_int
from optuna.trial import TrialState
from report import publish
from rich.console import Console
from rich.table import Table

from hpo.paths import PROJECT_ROOT

log = logging.getLogger("bench.sweep_efficiency")

PRUNERS = ("none", "median")
LOG_TAIL_CHARS = 3000


@dataclass
class SweepResult:
    """One sweep's figures, read back from its study storage."""

    pruner: str
    sampler_seed: int
    study_name: str
    returncode: int
    wall_seconds: float
    complete: int
    pruned: int
    failed: int
    epochs_trained: int
    best_val_acc: float | None
    best_params: dict[str, Any]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-trials", type=positive_int, default=20)
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="trainer.epochs (default: conf/)"
    )
    parser.add_argument(
        "--train-subset", type=positive_int, default=None, help="data.train_subset (default: all)"
    )
    parser.add_argument(
        "--sampler-seeds",
        type=int,
        nargs="+",
        default=[7],
        help="one pair of sweeps (unpruned, pruned) per seed, the same seed within a pair",
    )
    parser.add_argument(
        "--pruner-args",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="settings of the median pruner, e.g. n_warmup_steps=1 n_startup_trials=5",
    )
    parser.add_argument(
        "--extra", nargs="+", default=[], metavar="OVERRIDE", help="more Hydra overrides"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the files here (default: a temp dir)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def sweep_command(
    args: argparse.Namespace, pruner: str, seed: int, study_name: str, folder: Path
) -> list[str]:
    """The `train.py -m` command line of one sweep, writing only under `folder`."""
    overrides = [
        "hydra/sweeper=optuna",
        f"hydra/sweeper/pruner={pruner}",
        f"hydra.sweeper.n_trials={args.n_trials}",
        f"hydra.sweeper.study_name={study_name}",
        f"hydra.sweeper.storage={storage_url(folder)}",
        f"hydra.sweeper.sampler.seed={seed}",
        # The default search stops after a timeout; a time cap would let the faster sweep run
        # more trials, so both run exactly n_trials (--extra can set one again).
        "hydra.sweeper.timeout=null",
        f"hydra.sweep.dir={folder / 'multirun'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        "trainer.progress=false",
    ]
    if pruner != "none":
        overrides += [f"hydra.sweeper.pruner.{setting}" for setting in args.pruner_args]
    if args.epochs is not None:
        overrides.append(f"trainer.epochs={args.epochs}")
    if args.train_subset is not None:
        overrides.append(f"data.train_subset={args.train_subset}")
    return [sys.executable, str(PROJECT_ROOT / "train.py"), "-m", *overrides, *args.extra]


def storage_url(folder: Path) -> str:
    """The SQLite Optuna storage of the sweep in `folder` (absolute path: four slashes)."""
    return f"sqlite:///{folder.resolve() / 'optuna.db'}"


def run_sweep(args: argparse.Namespace, pruner: str, seed: int, folder: Path) -> SweepResult:
    """Run one sweep as a subprocess, time it, and read its study back."""
    folder.mkdir(parents=True)
    study_name = f"bench-sweep-{pruner}-{uuid.uuid4().hex[:8]}"
    command = sweep_command(args, pruner, seed, study_name, folder)
    log.info("pruner=%s: %s", pruner, " ".join(command))
    start = time.perf_counter()
    with (folder / "sweep.log").open("w") as out:
        done = subprocess.run(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (folder / "sweep.log").read_text()[-LOG_TAIL_CHARS:]
        log.error("the pruner=%s sweep exited with %d:\n%s", pruner, done.returncode, tail)
    return read_study(pruner, seed, study_name, folder, done.returncode, wall)


def read_study(
    pruner: str, seed: int, study_name: str, folder: Path, returncode: int, wall: float
) -> SweepResult:
    """Count the trials of the study in `folder` and find its best one."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url(folder))
    except KeyError:  # the sweep died before creating its study
        return SweepResult(pruner, seed, study_name, returncode, wall, 0, 0, 0, 0, None, {})
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value or 0.0) if complete else None
    return SweepResult(
        pruner=pruner,
        sampler_seed=seed,
        study_name=study_name,
        returncode=returncode,
        wall_seconds=wall,
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        # Every trained epoch reports one intermediate value, pruned trials included.
        epochs_trained=sum(len(t.intermediate_values) for t in trials),
        best_val_acc=None if best is None else best.value,
        best_params={} if best is None else best.params,
    )


def summarize(args: argparse.Namespace, results: list[SweepResult]) -> dict[str, Any]:
    """The JSON-ready results with the speed-up of pruning and the mean best accuracies."""
    plain = [r for r in results if r.pruner == "none"]
    pruned = [r for r in results if r.pruner != "none"]
    return {
        "benchmark": "sweep_efficiency",
        "n_trials": args.n_trials,
        "epochs": args.epochs,
        "train_subset": args.train_subset,
        "sampler_seeds": args.sampler_seeds,
        "pruner_args": args.pruner_args,
        "extra_overrides": args.extra,
        "results": [asdict(r) for r in results],
        "speedup_wall": sum(r.wall_seconds for r in plain) / sum(r.wall_seconds for r in pruned),
        "epochs_saved": sum(r.epochs_trained for r in plain)
        - sum(r.epochs_trained for r in pruned),
        "mean_best_unpruned": _mean_best(plain),
        "mean_best_pruned": _mean_best(pruned),
    }


def _mean_best(results: list[SweepResult]) -> float | None:
    bests = [r.best_val_acc for r in results if r.best_val_acc is not None]
    return sum(bests) / len(bests) if len(bests) == len(results) else None


def render(summary: dict[str, Any], console: Console) -> None:
    """Print one row per sweep and the speed-up."""
    subset = summary["train_subset"] or "50k"
    epochs = summary["epochs"] or "conf default"
    pruner_args = " ".join(summary["pruner_args"]) or "defaults"
    table = Table(
        title=f"Same search, {summary['n_trials']} trials, {epochs} epochs, "
        f"train subset {subset}, median pruner with {pruner_args}"
    )
    columns = ("seed", "pruner", "wall s", "complete", "pruned", "failed", "epochs", "best val")
    for column in columns:
        table.add_column(column, justify="left" if column == "pruner" else "right")
    for r in summary["results"]:
        best = "-" if r["best_val_acc"] is None else f"{r['best_val_acc']:.2%}"
        table.add_row(
            str(r["sampler_seed"]),
            r["pruner"],
            f"{r['wall_seconds']:.0f}",
            str(r["complete"]),
            str(r["pruned"]),
            str(r["failed"]),
            str(r["epochs_trained"]),
            best,
        )
    console.print(table)
    means = [summary["mean_best_unpruned"], summary["mean_best_pruned"]]
    shown = ["-" if m is None else f"{m:.2%}" for m in means]
    console.print(
        f"speed-up from median pruning: {summary['speedup_wall']:.2f}x wall time, "
        f"{summary['epochs_saved']} trial-epochs saved; mean best val acc "
        f"unpruned {shown[0]}, pruned {shown[1]}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run both sweeps; returns 1 only when a sweep process failed."""
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fmnist-sweep-bench-"))
    try:
        results = [
            run_sweep(args, pruner, seed, workdir / f"seed-{seed}-pruner-{pruner}")
            for seed in args.sampler_seeds
            for pruner in PRUNERS
        ]
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(args, results)
    publish(summary, render, args.json)
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
