"""Trials per hour with several workers: 1 worker x 2 threads against 2 workers x 1 thread.

Runs the same Optuna search through the real CLI (`train.py -m hydra/sweeper=optuna`) in
four configurations and reports how many trials each finishes per hour:

- layout `1x2`: one sweep process running its trials one after the other, each training
  with 2 torch intra-op threads (`trainer.num_threads=2`, the whole 2-core machine);
- layout `2x1`: two sweep processes (workers) started together on one study (same storage,
  same study name, each its own `hydra.sweep.dir`), each training with 1 thread;

each on SQLite (`sqlite:///<tmp>/optuna.db`, MLflow `sqlite:///<tmp>/mlflow.db`, fresh
files per configuration) and on PostgreSQL with an MLflow server (`hpo.services.start` in
a temporary folder under /tmp on free ports, shared by the PostgreSQL configurations,
stopped and removed at the end, also after an error, Ctrl-C or SIGTERM).

Why it can differ. Threads: PyTorch's intra-op threads split each kernel of one training
step; for a small CNN on 2 cores the kernels are short, so the split costs
synchronisation and leaves the cores idle in every single-threaded part of a trial
(Python, the optimizer step, the data slicing, validation bookkeeping, MLflow logging and
the storage writes between epochs and trials), and 2 threads run well under 2x one.
Workers: each is its own process with its own copy of the data, its own model and its own
Python interpreter, so two single-threaded trials keep both cores busy and overlap each
other's serial parts; they pay for it with a second start-up (importing torch and MLflow,
loading the data: seconds, counted in the wall time here) and twice the memory. Storage:
SQLite serialises writers (one file lock for the whole database), so two workers writing
heartbeats, intermediate values and MLflow metrics wait on each other's commits;
PostgreSQL takes concurrent writers but its server and the MLflow server run on the same
2 cores as the training.

Every configuration is a fresh study with the same trial budget (`--n-trials`; with two
workers the study can end one trial over, which is why trials per hour is the measure and
not wall time), the same search space, the same epochs and the same sampler seed (the
worker that creates the study keeps it; a joining worker draws its own stream, as the
sweeper does so that workers do not propose the same trials). So that every trial costs
the same whatever the sampler proposes, the architecture and batch size are fixed (the
default CNN: `model.depth=2 model.width=32`, `trainer.batch_size=128`; only dropout,
learning rate and weight decay are searched, which do not change the cost), the pruner
is off (`hydra/sweeper/pruner=none`: every trial trains all its epochs) and there is no
timeout. Defaults: 8 trials of 8 epochs on a 10,000-image subset of the train split (the
full 10,000-image validation set each epoch), bf16 where the CPU has it
(`trainer.precision=auto`), about 3-4 minutes a configuration on the 2-core CPU, about
15 minutes for all four.

Per configuration: wall time from the first worker's start to the last worker's exit,
the trials COMPLETE/PRUNED/FAIL read back from the Optuna storage, trials finished
(complete + pruned) per hour of wall time, the mean trial duration (each trial's
datetime_complete - datetime_start), the start-up time (first worker start to the first
trial's start), how busy the workers were (trial seconds / (wall x workers)), the number
of distinct `worker` user attrs (`host:pid`: how many workers actually ran trials), and
the 1-minute load average at its start. Then the speed-up of each layout over the first
one (`--layouts`, default 1x2) per storage. Measurements only; the exit status is 1 when
a worker exits non-zero, a trial FAILs or the budget is not finished (then the figures
are not comparable), and the table says which.

    .venv/bin/python bench/workers.py [--n-trials 8] [--epochs 8] [--train-subset 10000]
        [--storages sqlite postgresql] [--layouts 1x2 2x1] [--sampler-seed 7]
        [--extra OVERRIDE ...] [--workdir DIR] [--json bench/results/workers.json]

`--train-subset 0` trains on the whole split (needed with `--extra data=synthetic`, whose
train split has 512 images). A smoke test in about a minute:
`--n-trials 2 --epochs 1 --train-subset 0 --extra data=synthetic`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cli_types import non_negative_int, positive_int
from optuna.trial import FrozenTrial, TrialState
from report import publish
from rich.console import Console
from rich.table import Table
from study_workers import Stores, StudyWorkers, exit_on_sigterm, local_services

log = logging.getLogger("bench.workers")

STORAGES = ("sqlite", "postgresql")
LOG_TAIL_CHARS = 3000
# Fixed so that every trial costs the same whatever the sampler proposes: the default CNN
# (conf/model/cnn.yaml) at one batch size. The default search's other dimensions (dropout,
# learning rate, weight decay) stay searched.
FIXED_COST = ("model=cnn", "model.depth=2", "model.width=32", "trainer.batch_size=128")


@dataclass(frozen=True)
class Layout:
    """`workers` sweep processes on one study, each training with `threads` torch threads."""

    workers: int
    threads: int

    def __str__(self) -> str:
        return f"{self.workers}x{self.threads}"


def layout(text: str) -> Layout:
    """argparse type: `WORKERSxTHREADS`, e.g. 1x2 or 2x1."""
    workers, sep, threads = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError(text)
        return Layout(positive_int(workers), positive_int(threads))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"expected WORKERSxTHREADS with ints >= 1 (e.g. 2x1), got {text}"
        ) from None


@dataclass
class ConfigResult:
    """One configuration's figures, read back from its study."""

    storage: str
    layout: str
    workers: int
    threads: int
    study_name: str
    returncodes: list[int]
    load_1min_at_start: float
    wall_seconds: float
    complete: int
    pruned: int
    failed: int
    unfinished: int
    trials_per_hour: float
    mean_trial_seconds: float | None
    startup_seconds: float | None
    busy_share: float | None
    distinct_workers: int
    problems: list[str]
    notes: list[str]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-trials", type=positive_int, default=8, help="the study's budget")
    parser.add_argument("--epochs", type=positive_int, default=8, help="trainer.epochs")
    parser.add_argument(
        "--train-subset",
        type=non_negative_int,
        default=10000,
        help="data.train_subset; 0 = the whole train split",
    )
    parser.add_argument("--storages", nargs="+", choices=STORAGES, default=list(STORAGES))
    parser.add_argument(
        "--layouts",
        type=layout,
        nargs="+",
        default=[Layout(1, 2), Layout(2, 1)],
        metavar="WxT",
        help="workers x threads each; speed-ups are over the first (default: 1x2 2x1)",
    )
    parser.add_argument("--sampler-seed", type=int, default=7, help="hydra.sweeper.sampler.seed")
    parser.add_argument(
        "--extra", nargs="+", default=[], metavar="OVERRIDE", help="more Hydra overrides"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the SQLite stores and logs here"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def worker_overrides(args: argparse.Namespace, threads: int) -> list[str]:
    """The overrides of every worker of one layout, after the study's own."""
    overrides = [
        "hydra/sweeper/pruner=none",
        f"hydra.sweeper.sampler.seed={args.sampler_seed}",
        # The default search stops after a timeout; every configuration runs the budget.
        "hydra.sweeper.timeout=null",
        "trainer.progress=false",
        f"trainer.num_threads={threads}",
        f"trainer.epochs={args.epochs}",
        *FIXED_COST,
    ]
    if args.train_subset:
        overrides.append(f"data.train_subset={args.train_subset}")
    return [*overrides, *args.extra]


def run_configuration(
    args: argparse.Namespace, storage: str, lay: Layout, stores: Stores, folder: Path
) -> ConfigResult:
    """Start the layout's workers together on a fresh study, wait for all, read it back."""
    study_name = f"bench-workers-{storage}-{lay}-{uuid.uuid4().hex[:8]}"
    workers = StudyWorkers(
        folder, stores, study_name, overrides=worker_overrides(args, lay.threads)
    )
    command = workers.command(args.n_trials, folder / "multirun-<i>")
    log.info("%s %s: %d x %s", storage, lay, lay.workers, " ".join(command))
    load = os.getloadavg()[0]
    started_at = datetime.now()  # naive local time, as Optuna's datetime_start
    begin = time.perf_counter()
    with workers:  # ends the workers still running after an error or an interrupt
        for _ in range(lay.workers):
            workers.start(args.n_trials)
        # Waiting in turn: the clock stops once the last of them has exited.
        codes = workers.wait()
        wall = time.perf_counter() - begin
    for index, code in enumerate(codes):
        if code != 0:
            log.error(
                "%s %s: worker %d exited with %d:\n%s",
                storage,
                lay,
                index,
                code,
                workers.tail(index, LOG_TAIL_CHARS),
            )
    trials = workers.trials()
    return summarize_configuration(
        args, storage, lay, study_name, codes, load, wall, started_at, trials
    )


def summarize_configuration(
    args: argparse.Namespace,
    storage: str,
    lay: Layout,
    study_name: str,
    codes: list[int],
    load: float,
    wall: float,
    started_at: datetime,
    trials: list[FrozenTrial] | None,
) -> ConfigResult:
    """Count the trials, time them, and list what went wrong."""
    problems = [f"worker {i} exited {code}" for i, code in enumerate(codes) if code != 0]
    notes: list[str] = []
    if trials is None:
        problems.append("no study was created")
        trials = []
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    unfinished = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    if failed:
        problems.append(f"{failed} FAIL trial(s)")
    if unfinished:
        problems.append(f"{unfinished} trial(s) left RUNNING/WAITING")
    if len(finished) < args.n_trials:
        problems.append(f"{len(finished)} of {args.n_trials} trials finished")
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in finished
        if t.datetime_start is not None and t.datetime_complete is not None
    ]
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    owners = {t.user_attrs["worker"] for t in trials if "worker" in t.user_attrs}
    if trials and len(owners) < lay.workers:
        notes.append(f"only {len(owners)} of {lay.workers} workers ran a trial")
    return ConfigResult(
        storage=storage,
        layout=str(lay),
        workers=lay.workers,
        threads=lay.threads,
        study_name=study_name,
        returncodes=codes,
        load_1min_at_start=load,
        wall_seconds=wall,
        complete=sum(t.state == TrialState.COMPLETE for t in trials),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=failed,
        unfinished=unfinished,
        trials_per_hour=len(finished) / wall * 3600,
        mean_trial_seconds=sum(durations) / len(durations) if durations else None,
        startup_seconds=(min(starts) - started_at).total_seconds() if starts else None,
        busy_share=sum(durations) / (wall * lay.workers) if durations else None,
        distinct_workers=len(owners),
        problems=problems,
        notes=notes,
    )


def speedups(results: list[ConfigResult], baseline: str) -> dict[str, dict[str, float | None]]:
    """Per storage: each layout's trials per hour over the baseline layout's."""
    table: dict[str, dict[str, float | None]] = {}
    for storage in dict.fromkeys(r.storage for r in results):
        rows = {r.layout: r for r in results if r.storage == storage}
        base = rows.get(baseline)
        table[storage] = {name: _ratio(r, base) for name, r in rows.items() if name != baseline}
    return table


def _ratio(result: ConfigResult, base: ConfigResult | None) -> float | None:
    """Trials per hour over the baseline's; None when either failed (not comparable)."""
    if base is None or base.trials_per_hour <= 0 or result.problems or base.problems:
        return None
    return result.trials_per_hour / base.trials_per_hour


def summarize(args: argparse.Namespace, results: list[ConfigResult]) -> dict[str, Any]:
    """The JSON-ready results with the speed-ups over the first layout."""
    baseline = str(args.layouts[0])
    return {
        "benchmark": "workers",
        "n_trials": args.n_trials,
        "epochs": args.epochs,
        "train_subset": args.train_subset or None,
        "sampler_seed": args.sampler_seed,
        "fixed_overrides": ["hydra/sweeper/pruner=none", *FIXED_COST],
        "extra_overrides": args.extra,
        "cpu_count": os.cpu_count(),
        "baseline_layout": baseline,
        "results": [asdict(r) for r in results],
        "speedup_trials_per_hour": speedups(results, baseline),
        "all_ok": all(not r.problems for r in results),
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(summary: dict[str, Any], console: Console) -> None:
    """One row per configuration, then the speed-ups and any problem."""
    subset = summary["train_subset"] or "whole split"
    extra = " ".join(summary["extra_overrides"])
    table = Table(
        title=f"Trials per hour: {summary['n_trials']} trials of {summary['epochs']} epochs, "
        f"train subset {subset}, {' '.join(summary['fixed_overrides'][1:])}, no pruning"
        + (f", {extra}" if extra else "")
    )
    # Narrow enough for 110 columns: C/P/F = complete/pruned/failed trials.
    columns = (
        "storage", "layout", "wall s", "C/P/F", "trials/h", "trial s", "start s", "busy",
        "workers", "load", "status",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("storage", "status") else "right")
    for r in summary["results"]:
        busy = "-" if r["busy_share"] is None else f"{r['busy_share']:.0%}"
        table.add_row(
            r["storage"],
            r["layout"],
            f"{r['wall_seconds']:.0f}",
            f"{r['complete']}/{r['pruned']}/{r['failed']}",
            f"{r['trials_per_hour']:.0f}",
            _seconds(r["mean_trial_seconds"]),
            _seconds(r["startup_seconds"]),
            busy,
            str(r["distinct_workers"]),
            f"{r['load_1min_at_start']:.2f}",
            "ok" if not r["problems"] else "FAILED",
        )
    console.print(table)
    console.print(
        "trial s: mean datetime_complete - datetime_start; start s: first worker start to the "
        "first trial's start; busy: trial seconds / (wall x workers); workers: distinct "
        "`worker` attrs; load: 1-minute load at the start"
    )
    baseline = summary["baseline_layout"]
    for storage, ratios in summary["speedup_trials_per_hour"].items():
        for name, ratio in ratios.items():
            shown = "- (a configuration failed)" if ratio is None else f"{ratio:.2f}x"
            console.print(f"{storage}: {name} over {baseline}, trials per hour: {shown}")
    for r in summary["results"]:
        for line in r["problems"] + r["notes"]:
            console.print(f"{r['storage']} {r['layout']}: {line}")


def main(argv: list[str] | None = None) -> int:
    """Run every configuration; returns 1 when one of them failed."""
    args = parse_args(argv)
    exit_on_sigterm()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fmnist-workers-bench-"))
    results: list[ConfigResult] = []
    try:
        for storage in dict.fromkeys(args.storages):
            with ExitStack() as stack:
                services = (
                    stack.enter_context(local_services("fmnist-workers-services-"))
                    if storage == "postgresql"
                    else None
                )
                for lay in dict.fromkeys(args.layouts):
                    folder = workdir / f"{storage}-{lay}"
                    folder.mkdir(parents=True)
                    stores = (
                        Stores.sqlite(folder) if services is None else Stores.of_services(services)
                    )
                    results.append(run_configuration(args, storage, lay, stores, folder))
    except KeyboardInterrupt:
        log.error("interrupted: workers ended, services stopped, nothing to report")
        return 130
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(args, results)
    publish(summary, render, args.json)
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
