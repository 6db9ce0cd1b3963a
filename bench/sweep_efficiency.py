"""What pruning and multi-fidelity buy: the same Optuna search through the real CLI, per arm.

Runs `train.py -m hydra/sweeper=optuna` (or `experiment=<name>` with `--experiment`) on the
real data, for each sampler seed, once per arm, with the same search space, sampler seed and
trial budget (`--n-trials`, or a time budget with `--deadline`):

- `none`: `hydra/sweeper/pruner=none`, every trial runs all its epochs;
- `median`: the median pruner with its settings from `--pruner-args` (e.g. a warm-up:
  `n_warmup_steps=1 n_startup_trials=5`);
- `halving`: Optuna's successive-halving pruner, which stops a run in the middle of its
  schedule (`min_resource=--min-budget`, `reduction_factor=--eta`);
- `budget`: multi-fidelity with the budget as a parameter (`hydra.sweeper.fidelity` over
  `trainer.epochs`, from `--min-budget` to `--epochs` by `--eta`): each run trains its whole
  schedule at its own budget and the best 1/eta are rerun at the next budget.

Each sweep gets a fresh study, Optuna storage, MLflow store and sweep folder under a
temporary directory. Afterwards each study is read back from its storage and the wall time,
trials complete/pruned/failed, epochs trained and best validation accuracy of a run that
trained all its epochs are reported, with each arm's mean over the seeds. With `--cores`
the arms of one seed run at the same time, each pinned to its own CPUs (torch threads = its
CPU count), so that a comparison at equal time gives each arm the same machine. Measurements
only; the exit status is 1 only when a sweep itself fails (then there is nothing to compare).

    .venv/bin/python bench/sweep_efficiency.py [--arms none median] [--n-trials 20]
        [--epochs 3] [--sampler-seeds 7 8 9] [--pruner-args n_warmup_steps=1 ...]
        [--experiment quick] [--deadline SECONDS] [--min-budget 1] [--eta 3]
        [--cores 0 1] [--train-subset 5000] [--extra 'model.width=choice(32,64)' ...]
        [--json PATH]

The full 20-trial version takes 40+ minutes on 2 CPU cores; a quick check:
`--n-trials 6 --epochs 2 --train-subset 5000`.
"""

from __future__ import annotations

import argparse
import logging
import os
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
from cli_types import positive_float, positive_int
from optuna.trial import TrialState
from report import publish
from rich.console import Console
from rich.table import Table

from hpo.paths import PROJECT_ROOT
from hpo.sweep.fidelity import BUDGET_ATTR

log = logging.getLogger("bench.sweep_efficiency")

ARMS = ("none", "median", "halving", "budget")
LOG_TAIL_CHARS = 3000


@dataclass
class SweepResult:
    """One sweep's figures, read back from its study storage."""

    arm: str
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
    parser.add_argument(
        "--arms", nargs="+", choices=ARMS, default=["none", "median"], help="what to compare"
    )
    parser.add_argument("--n-trials", type=positive_int, default=20)
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="trainer.epochs (default: conf/); the top budget of the halving and budget arms",
    )
    parser.add_argument(
        "--experiment", default=None, help="experiment=<name> (default: the CNN search)"
    )
    parser.add_argument(
        "--deadline",
        type=positive_float,
        default=None,
        help="hydra.sweeper.deadline in seconds: compare at equal time (set --n-trials high)",
    )
    parser.add_argument(
        "--min-budget", type=positive_int, default=1, help="the smallest budget, in epochs"
    )
    parser.add_argument("--eta", type=positive_int, default=3, help="1/eta of runs go on")
    parser.add_argument(
        "--cores",
        nargs="+",
        default=None,
        metavar="CPUS",
        help="run the arms of a seed at once, arm i on CPUs i (e.g. 0 1, or 0,1 2,3)",
    )
    parser.add_argument(
        "--train-subset", type=positive_int, default=None, help="data.train_subset (default: all)"
    )
    parser.add_argument(
        "--sampler-seeds",
        type=int,
        nargs="+",
        default=[7],
        help="one sweep per arm and seed, the same seed for every arm",
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
    args = parser.parse_args(argv)
    if args.epochs is None and {"halving", "budget"} & set(args.arms):
        parser.error("the halving and budget arms need --epochs (their top budget)")
    if args.cores is not None and len(args.cores) != len(args.arms):
        parser.error(f"--cores needs one CPU list per arm ({len(args.arms)})")
    return args


def arm_overrides(args: argparse.Namespace, arm: str) -> list[str]:
    """The Hydra overrides that make `arm` (see the module docstring)."""
    if arm == "median":
        return ["hydra/sweeper/pruner=median"] + [
            f"hydra.sweeper.pruner.{setting}" for setting in args.pruner_args
        ]
    if arm == "halving":
        return [
            "hydra/sweeper/pruner=successive_halving",
            f"hydra.sweeper.pruner.min_resource={args.min_budget}",
            f"hydra.sweeper.pruner.reduction_factor={args.eta}",
        ]
    overrides = ["hydra/sweeper/pruner=none"]
    if arm == "budget":
        overrides.append(
            "hydra.sweeper.fidelity={key:trainer.epochs,"
            f"min:{args.min_budget},max:{args.epochs},eta:{args.eta}}}"
        )
    return overrides


def sweep_command(
    args: argparse.Namespace, arm: str, seed: int, study_name: str, folder: Path
) -> list[str]:
    """The `train.py -m` command line of one sweep, writing only under `folder`."""
    overrides = [
        f"experiment={args.experiment}" if args.experiment else "hydra/sweeper=optuna",
        *arm_overrides(args, arm),
        f"hydra.sweeper.n_trials={args.n_trials}",
        f"hydra.sweeper.study_name={study_name}",
        f"hydra.sweeper.storage={storage_url(folder)}",
        f"hydra.sweeper.sampler.seed={seed}",
        # The default search stops after a timeout; a time cap would let the faster sweep run
        # more trials, so both run exactly n_trials (--extra can set one again).
        "hydra.sweeper.timeout=null",
        f"hydra.sweeper.deadline={'null' if args.deadline is None else args.deadline}",
        f"hydra.sweep.dir={folder / 'multirun'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        "trainer.progress=false",
    ]
    # The budget arm's sweeper sets the epochs of each run (--epochs is its top budget).
    if args.epochs is not None and arm != "budget":
        overrides.append(f"trainer.epochs={args.epochs}")
    if args.train_subset is not None:
        overrides.append(f"data.train_subset={args.train_subset}")
    return [sys.executable, str(PROJECT_ROOT / "train.py"), "-m", *overrides, *args.extra]


def storage_url(folder: Path) -> str:
    """The SQLite Optuna storage of the sweep in `folder` (absolute path: four slashes)."""
    return f"sqlite:///{folder.resolve() / 'optuna.db'}"


def run_seed(args: argparse.Namespace, seed: int, workdir: Path) -> list[SweepResult]:
    """Run one sweep per arm as subprocesses (at once, pinned, with `--cores`; else one
    after the other), time each, and read its study back."""
    if args.cores is None:
        return [run_sweeps(args, [(arm, None)], seed, workdir)[0] for arm in args.arms]
    pinned: list[tuple[str, set[int] | None]] = [
        (arm, _cpu_set(cpus)) for arm, cpus in zip(args.arms, args.cores, strict=True)
    ]
    return run_sweeps(args, pinned, seed, workdir)


def _cpu_set(text: str) -> set[int]:
    return {int(cpu) for cpu in text.split(",")}


def run_sweeps(
    args: argparse.Namespace, arms: list[tuple[str, set[int] | None]], seed: int, workdir: Path
) -> list[SweepResult]:
    """Start one sweep per (arm, CPUs) at once and wait for all of them."""
    started = []
    for arm, cpus in arms:
        folder = workdir / f"seed-{seed}-{arm}"
        folder.mkdir(parents=True)
        study_name = f"bench-sweep-{arm}-{uuid.uuid4().hex[:8]}"
        command = sweep_command(args, arm, seed, study_name, folder)
        if cpus is not None:  # one torch thread per CPU of its own, none shared
            command.append(f"trainer.num_threads={len(cpus)}")
        log.info("arm=%s seed=%d cpus=%s: %s", arm, seed, cpus or "all", " ".join(command))
        out = (folder / "sweep.log").open("w")
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=None if cpus is None else lambda cpus=cpus: os.sched_setaffinity(0, cpus),
        )
        started.append((arm, folder, study_name, process, out, time.perf_counter()))
    results = []
    for arm, folder, study_name, process, out, start in started:
        returncode = process.wait()
        wall = time.perf_counter() - start
        out.close()
        if returncode != 0:
            tail = (folder / "sweep.log").read_text()[-LOG_TAIL_CHARS:]
            log.error("the arm=%s sweep exited with %d:\n%s", arm, returncode, tail)
        results.append(read_study(arm, seed, study_name, folder, returncode, wall))
    return results


def read_study(
    arm: str, seed: int, study_name: str, folder: Path, returncode: int, wall: float
) -> SweepResult:
    """Count the trials of the study in `folder` and find its best one."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url(folder))
    except KeyError:  # the sweep died before creating its study
        return SweepResult(arm, seed, study_name, returncode, wall, 0, 0, 0, 0, None, {})
    trials = study.trials
    # Complete = trained all its epochs: with multi-fidelity, lower budgets end PRUNED.
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value or 0.0) if complete else None
    return SweepResult(
        arm=arm,
        sampler_seed=seed,
        study_name=study_name,
        returncode=returncode,
        wall_seconds=wall,
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        epochs_trained=sum(_epochs_trained(t) for t in trials),
        best_val_acc=None if best is None else best.value,
        best_params={} if best is None else best.params,
    )


def _epochs_trained(trial: optuna.trial.FrozenTrial) -> int:
    """A multi-fidelity run trained its budget; any other trial reported once per epoch."""
    if BUDGET_ATTR in trial.user_attrs and trial.state != TrialState.FAIL:
        return int(trial.user_attrs[BUDGET_ATTR])
    return len(trial.intermediate_values)


def summarize(args: argparse.Namespace, results: list[SweepResult]) -> dict[str, Any]:
    """The JSON-ready results with each arm's totals and mean best accuracy over the seeds."""
    arms = {}
    for arm in args.arms:
        mine = [r for r in results if r.arm == arm]
        arms[arm] = {
            "wall_seconds": sum(r.wall_seconds for r in mine),
            "epochs_trained": sum(r.epochs_trained for r in mine),
            "mean_best_val_acc": _mean_best(mine),
        }
    return {
        "benchmark": "sweep_efficiency",
        "arms": arms,
        "n_trials": args.n_trials,
        "deadline": args.deadline,
        "experiment": args.experiment,
        "epochs": args.epochs,
        "min_budget": args.min_budget,
        "eta": args.eta,
        "cores": args.cores,
        "train_subset": args.train_subset,
        "sampler_seeds": args.sampler_seeds,
        "pruner_args": args.pruner_args,
        "extra_overrides": args.extra,
        "results": [asdict(r) for r in results],
    }


def _mean_best(results: list[SweepResult]) -> float | None:
    bests = [r.best_val_acc for r in results if r.best_val_acc is not None]
    return sum(bests) / len(bests) if bests and len(bests) == len(results) else None


def render(summary: dict[str, Any], console: Console) -> None:
    """Print one row per sweep, then one per arm."""
    subset = summary["train_subset"] or "50k"
    epochs = summary["epochs"] or "conf default"
    budget = (
        f"a {summary['deadline']:.0f} s deadline"
        if summary["deadline"]
        else f"{summary['n_trials']} trials"
    )
    search = f"experiment={summary['experiment']}" if summary["experiment"] else "the CNN search"
    table = Table(title=f"{search}, {budget}, {epochs} epochs, train subset {subset}")
    columns = ("seed", "arm", "wall s", "complete", "pruned", "failed", "epochs", "best val")
    for column in columns:
        table.add_column(column, justify="left" if column == "arm" else "right")
    for r in summary["results"]:
        best = "-" if r["best_val_acc"] is None else f"{r['best_val_acc']:.2%}"
        table.add_row(
            str(r["sampler_seed"]),
            r["arm"],
            f"{r['wall_seconds']:.0f}",
            str(r["complete"]),
            str(r["pruned"]),
            str(r["failed"]),
            str(r["epochs_trained"]),
            best,
        )
    console.print(table)
    for arm, totals in summary["arms"].items():
        mean = totals["mean_best_val_acc"]
        console.print(
            f"{arm}: {totals['wall_seconds']:.0f} s, {totals['epochs_trained']} trial-epochs, "
            f"mean best val acc {'-' if mean is None else f'{mean:.2%}'}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run every arm's sweeps; returns 1 only when a sweep process failed."""
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fmnist-sweep-bench-"))
    try:
        results = [r for seed in args.sampler_seeds for r in run_seed(args, seed, workdir)]
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(args, results)
    publish(summary, render, args.json)
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
