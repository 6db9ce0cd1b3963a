"""Scale by simulation: N sweep processes of a one-second toy task on one PostgreSQL study.

Users who mean to run 100 workers need to know where one study storage stops keeping up
before they rent the machines. This script runs N real sweep processes (`python
tests/toy_app/app.py -m`, the project's own sweeper, default launcher) on ONE study in a
PostgreSQL database (`hpo.services.start` in a temporary folder under /tmp on free ports,
stopped and removed at the end, also after an error, Ctrl-C or SIGTERM), for several N
(default 4, 8, 16, 32) and for the TPE and the random sampler. The task sleeps `--sleep`
seconds (default 1) and reports once to its trial, as a training epoch would; it needs no
torch, no data and no MLflow, so a 2-core machine can host many workers.

Measured per configuration (sampler, N), on a fresh study with a budget of
`--trials-per-worker` x N trials:

- trials per second in the steady state: trials told between the moment the last worker
  asked its first trial (all N running) and the last ask of the study, over that window;
  `efficiency` is that over the ideal N / sleep (every worker always in its task);
- the trial cycle of every worker, from its log: each trial's "Trial N: ..." line (asked)
  and "Trial N COMPLETE ..." line (told), and a Hydra callback (`job_clock.py`) that logs
  when each job starts and ends. `ask` = previous tell -> this trial asked (stale check,
  budget counts, the sampler, the owner attr); `launch` = asked -> job started (Hydra
  composes the job's config); `tell` = job ended -> told. Median and 99th percentile over
  the steady window, in milliseconds;
- heartbeat writes, exactly: inserts + updates of PostgreSQL's `trial_heartbeats` table
  over the configuration (`pg_stat_user_tables`, read after every worker's connection has
  closed, which flushes its counters), per trial and per second (writes per trial x the
  steady trials per second);
- the database: transactions and rows read per trial (`pg_stat_database`, less the
  monitor's own queries), connections (`pg_stat_activity`, sampled every 0.5 s: their
  maximum, and per worker) against `max_connections`, sessions waiting on a lock (sampled),
  deadlocks, rollbacks;
- CPU: the workers' (children's rusage), PostgreSQL's (its processes' /proc times) and
  the whole machine's busy share (/proc/stat), over cores x wall time; the workers' peak
  resident memory in all (sampled).

And separately, before the configurations:

- start-up of one worker alone: wall and CPU seconds from process start to exit when the
  study's budget is already spent (imports, composing the config, opening the study), and
  its peak memory; with N workers starting at once on 2 cores, the table's `start s` is
  the time until the last of them asked its first trial;
- the Optuna calls a trial's cycle is made of, timed in this one process with no other
  load: `fail_stale_trials`, counting the study's trials by state (the budget check),
  `ask` (sampler + new trial row), the job's report + pruner check, and `tell`; first
  while one study grows to `--probe-trials` trials (default: the largest configuration's
  budget), then for `--probe-cycles` trials with `--probe-running` other trials left
  RUNNING beside them (default 32 and 100: what that many workers' trials are to each
  ask). This separates "the sampler gets slower as the study grows" and "every call reads
  the other workers' running trials" from "the workers wait for each other".

Where it stops scaling: the first doubling of N that gains less than half of the ideal
(the table's note), read together with the CPU busy share (the simulating host itself),
the probe (the calls against study size and running trials), lock waits and connections per worker
against max_connections (how many workers one server admits). The analysis of a run on
this machine is in bench/README.md.

    .venv/bin/python bench/scale.py [--workers 4 8 16 32] [--samplers tpe random]
        [--trials-per-worker 8] [--sleep 1.0] [--heartbeat-interval 1]
        [--grace-period 30] [--startup-samples 3] [--probe-trials N]
        [--probe-running 32 100] [--probe-cycles 24] [--timeout 600] [--workdir DIR]
        [--json bench/results/scale.json]

Exit status 1 when a configuration went wrong (a worker exited non-zero, a trial failed,
the budget was not finished or a log could not be read): its figures are then not
comparable; the table says which.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from cli_types import positive_float, positive_int
from hydra.utils import instantiate
from job_clock import OVERRIDE as JOB_CLOCK
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState
from report import publish
from rich.console import Console
from rich.table import Table
from study_workers import (
    TOY_APP,
    Stores,
    StudyWorkers,
    client_env,
    exit_on_sigterm,
    local_services,
)

from hpo.sweep import liveness
from hpo.sweep.config import MedianPrunerConfig, RandomSamplerConfig, TPESamplerConfig
from hpo.sweep.search_space import parse_search_space
from hpo.sweep.storage import open_storage

log = logging.getLogger("bench.scale")

SAMPLERS = {"tpe": TPESamplerConfig, "random": RandomSamplerConfig}
SAMPLER_SEED = 7
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
MONITOR_INTERVAL_S = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Lines of a worker's log (Hydra's "[2026-12-02 18:34:58,103][...]" prefix, local time).
LINE_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")
OPENED = re.compile(r"\] Study '.*' in .* \((?:created|joined) it\)")
ASKED = re.compile(r"\] Trial (\d+)(?: retries trial \d+)?: ")
TOLD = re.compile(r"\] Trial (\d+) (?:COMPLETE|PRUNED|FAIL)\b")
WAITING = re.compile(r"trial\(s\) of other workers still running")
JOB = re.compile(r"job (\d+) (started|ended) at (\d+\.\d+)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=positive_int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument(
        "--trials-per-worker", type=positive_int, default=8, help="budget = this x N"
    )
    parser.add_argument("--sleep", type=positive_float, default=1.0, help="task seconds")
    parser.add_argument("--heartbeat-interval", type=positive_int, default=1)
    parser.add_argument("--grace-period", type=positive_int, default=30)
    parser.add_argument("--startup-samples", type=positive_int, default=3)
    parser.add_argument(
        "--probe-trials",
        type=int,
        default=None,
        help="study size of the one-process probe (default: the largest budget; 0: none)",
    )
    parser.add_argument(
        "--probe-running",
        type=int,
        nargs="*",
        default=[32, 100],
        help="also probe with this many other trials running (each: --probe-cycles trials)",
    )
    parser.add_argument("--probe-cycles", type=positive_int, default=24)
    parser.add_argument(
        "--timeout", type=positive_float, default=600, help="seconds per configuration"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep the logs here")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.grace_period <= args.heartbeat_interval:
        parser.error("--grace-period must exceed --heartbeat-interval")
    return args


# --- the database and the machine ------------------------------------------------------


@dataclass
class Sample:
    """One look at the database and the workers while a configuration runs."""

    at: float
    connections: int
    active: int
    lock_waits: int
    lock_events: list[str]  # pg_stat_activity.wait_event of each session waiting on a lock
    workers_rss_mb: float


class PgMonitor:
    """Reads PostgreSQL's settings, counters and sessions, and its processes' CPU time."""

    def __init__(self, url: str, pg_data: Path) -> None:
        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self.pg_data = pg_data
        self.queries = 0  # ours, subtracted from the database's transaction count

    def _rows(self, sql: str) -> list[Any]:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            self.queries += 1
            return list(conn.execute(sqlalchemy.text(sql)))

    def settings(self) -> dict[str, str]:
        names = ("max_connections", "superuser_reserved_connections", "server_version")
        return {name: str(self._rows(f"SHOW {name}")[0][0]) for name in names}

    def counters(self) -> dict[str, int]:
        """The database's cumulative counters and the heartbeat table's writes."""
        db = self._rows(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, "
            "tup_updated, deadlocks, sessions FROM pg_stat_database "
            "WHERE datname = current_database()"
        )[0]
        beats = self._rows(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0) FROM pg_stat_user_tables "
            "WHERE relname = 'trial_heartbeats'"
        )[0]
        # Rows each table's scans read: which tables a trial's queries walk through.
        tables = self._rows(
            "SELECT relname, seq_tup_read, coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables"
        )
        names = ("commits", "rollbacks", "returned", "fetched", "inserted", "updated")
        values = dict(zip((*names, "deadlocks", "sessions"), db, strict=True))
        values["heartbeat_writes"] = beats[0]
        for name, seq, index in tables:
            values[f"seq_read:{name}"], values[f"index_read:{name}"] = seq, index
        return {key: int(value) for key, value in values.items()}

    def sessions(self, conn: sqlalchemy.Connection) -> tuple[int, int, list[str]]:
        """Connections to the study's database (not ours), active ones, and what each
        session waiting on a lock waits for (`transactionid`, `tuple`, `relation`, ...)."""
        self.queries += 1
        row = conn.execute(
            sqlalchemy.text(
                "SELECT count(*), count(*) FILTER (WHERE state = 'active'), "
                "coalesce(string_agg(wait_event, ' ') FILTER (WHERE wait_event_type = 'Lock'), "
                "'') FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).one()
        return int(row[0]), int(row[1]), str(row[2]).split()

    def cpu_seconds(self) -> float:
        """CPU time of the server: the postmaster, its live children and the reaped ones."""
        postmaster = int((self.pg_data / "postmaster.pid").read_text().split()[0])
        total = 0.0
        for pid in _pids():
            stat = _proc_stat(pid)
            if stat is None:
                continue
            if pid == postmaster:
                total += sum(stat[11:15])  # utime, stime, cutime, cstime
            elif stat[1] == postmaster:
                total += stat[11] + stat[12]
        return total / CLOCK_TICKS

    @contextmanager
    def sampling(self, pids: Callable[[], Sequence[int]]) -> Iterator[list[Sample]]:
        """Samples taken every MONITOR_INTERVAL_S in a thread while the block runs."""
        samples: list[Sample] = []
        stop = threading.Event()

        def run() -> None:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                while not stop.is_set():
                    conns, active, waits = self.sessions(conn)
                    rss = sum(_status_mb(pid, "VmRSS:") for pid in pids())
                    samples.append(Sample(time.time(), conns, active, len(waits), waits, rss))
                    stop.wait(MONITOR_INTERVAL_S)

        thread = threading.Thread(target=run, name="pg-monitor", daemon=True)
        thread.start()
        try:
            yield samples
        finally:
            stop.set()
            thread.join(timeout=30)


def _pids() -> Iterator[int]:
    return (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())


def _proc_stat(pid: int) -> list[int] | None:
    """/proc/<pid>/stat from field 3 on (after the command name), as ints; None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return [0, *(int(f) for f in fields[1:])]  # index 0 = state, not a number


def _status_mb(pid: int, key: str) -> float:
    """A memory line of /proc/<pid>/status (`VmRSS:`, `VmHWM:`) in MB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (the workers), so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


# --- a worker's trial cycle, from its log ----------------------------------------------


@dataclass
class Timeline:
    """One worker's trial cycle, in epoch seconds, from its log.

    `ask_s` holds the ask latency of every trial asked right after a tell (the first ask
    of a worker follows its start-up, and an ask after a wait for other workers follows a
    poll: neither is a latency).
    """

    started: float
    asked: dict[int, float] = field(default_factory=dict)
    ask_s: dict[int, float] = field(default_factory=dict)
    job_started: dict[int, float] = field(default_factory=dict)
    job_ended: dict[int, float] = field(default_factory=dict)
    told: dict[int, float] = field(default_factory=dict)

    @property
    def first_ask(self) -> float | None:
        return min(self.asked.values()) if self.asked else None


def read_timeline(path: Path, started: float) -> Timeline:
    """The worker's events, in the order its log has them."""
    timeline = Timeline(started)
    anchor: float | None = None  # the end of the previous tell, while nothing else ran
    for line in path.read_text(errors="replace").splitlines():
        if job := JOB.search(line):
            events = timeline.job_started if job[2] == "started" else timeline.job_ended
            events[int(job[1])] = float(job[3])
            continue
        stamp = LINE_TIME.match(line)
        if stamp is None:
            continue
        at = time.mktime(time.strptime(stamp[1], "%Y-%m-%d %H:%M:%S")) + int(stamp[2]) / 1000
        if asked := ASKED.search(line):
            number = int(asked[1])
            timeline.asked[number] = at
            if anchor is not None:
                timeline.ask_s[number] = at - anchor
            anchor = None
        elif told := TOLD.search(line):
            timeline.told[int(told[1])] = anchor = at
        elif OPENED.search(line) or WAITING.search(line):
            anchor = None
    return timeline


@dataclass
class Cycle:
    """Latencies of the trial cycle, pooled over workers, within the steady window."""

    ask: list[float]
    launch: list[float]
    task: list[float]
    tell: list[float]


def cycle_in(timelines: Sequence[Timeline], begin: float, end: float) -> Cycle:
    """Each part of the cycle whose trial was asked (or told) between `begin` and `end`."""
    cycle = Cycle([], [], [], [])
    for t in timelines:
        for number, at in t.asked.items():
            if not begin <= at <= end:
                continue
            if number in t.ask_s:
                cycle.ask.append(t.ask_s[number])
            if number in t.job_started:
                cycle.launch.append(t.job_started[number] - at)
        for number, at in t.told.items():
            if begin <= at <= end and number in t.job_ended:
                cycle.tell.append(at - t.job_ended[number])
                if number in t.job_started:
                    cycle.task.append(t.job_ended[number] - t.job_started[number])
    return cycle


def ms_stats(values: Sequence[float]) -> dict[str, float | None]:
    """Median and 99th percentile in milliseconds (None without values)."""
    if not values:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    p50, p99 = np.percentile(np.asarray(values) * 1000, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "n": len(values)}


# --- one configuration: N workers on a fresh study -------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters at one moment: the database's, PostgreSQL's, ours, the CPU's."""

    at: float
    counters: dict[str, int]
    monitor_queries: int
    pg_cpu: float
    workers_cpu: float
    busy: tuple[float, float]

    @classmethod
    def take(cls, monitor: PgMonitor) -> Snapshot:
        queries = monitor.queries
        counters = monitor.counters()
        return cls(
            time.time(), counters, queries, monitor.cpu_seconds(), children_cpu(), machine_busy()
        )


@dataclass
class ConfigResult:
    """One configuration's figures (times in seconds, latencies in milliseconds)."""

    sampler: str
    workers: int
    budget: int
    study_name: str
    returncodes: list[int]
    load_1min_at_start: float
    wall_s: float
    complete: int
    pruned: int
    failed: int
    unfinished: int
    workers_with_trials: int
    startup_s_median: float | None
    all_up_s: float | None
    steady_s: float | None
    steady_trials: int
    trials_per_s: float | None
    overall_trials_per_s: float
    efficiency: float | None
    ask: dict[str, float | None]
    launch: dict[str, float | None]
    task: dict[str, float | None]
    tell: dict[str, float | None]
    heartbeat_writes: int
    heartbeat_writes_per_trial: float | None
    heartbeat_writes_per_s: float | None
    db: dict[str, Any]
    connections_max: int
    connections_per_worker: float
    lock_waits_max: int
    lock_wait_share: float
    lock_wait_events: dict[str, int]
    cpu: dict[str, float]
    workers_rss_peak_mb: float
    problems: list[str]
    notes: list[str]


def toy_overrides(args: argparse.Namespace, sampler: str) -> list[str]:
    """Every worker's overrides: the sampler, the task's sleep, liveness, the job clock."""
    return [
        f"hydra/sweeper/sampler={sampler}",
        f"hydra.sweeper.sampler.seed={SAMPLER_SEED}",
        f"hydra.sweeper.heartbeat_interval={args.heartbeat_interval}",
        f"hydra.sweeper.grace_period={args.grace_period}",
        f"sleep={args.sleep}",
        "steps=1",
        JOB_CLOCK,
    ]


@dataclass
class Raw:
    """What one configuration left behind, before any figure is made of it."""

    sampler: str
    workers: int
    budget: int
    study_name: str
    sleep: float
    load: float
    codes: list[int]
    wall_s: float
    trials: list[FrozenTrial]
    timelines: list[Timeline]
    samples: list[Sample]
    before: Snapshot
    after: Snapshot
    problems: list[str]


def run_configuration(
    args: argparse.Namespace, sampler: str, n: int, stores: Stores, monitor: PgMonitor, folder: Path
) -> Raw:
    """Start N workers together on a fresh study, wait for all, read everything back."""
    study_name = f"scale-{sampler}-{n}-{uuid.uuid4().hex[:8]}"
    budget = args.trials_per_worker * n
    workers = StudyWorkers(folder, stores, study_name, TOY_APP, toy_overrides(args, sampler))
    command = " ".join(workers.command(budget, folder / "multirun-<i>"))
    log.info("%s, %d workers, %d trials: %s", sampler, n, budget, command)
    load = os.getloadavg()[0]
    problems: list[str] = []
    before = Snapshot.take(monitor)
    with workers, monitor.sampling(lambda: _live_pids(workers)) as samples:
        for _ in range(n):
            workers.start(budget)
        try:
            codes = workers.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            problems.append(f"still running after {args.timeout:.0f} s: ended")
            workers.end()
            codes = [-1 if p.returncode is None else p.returncode for p in workers.processes]
        wall = time.time() - workers.started_at[0]
    time.sleep(1.0)  # the workers' server sessions end (and flush their counters) after them
    after = Snapshot.take(monitor)
    for index, code in enumerate(codes):
        if code != 0:
            problems.append(f"worker {index} exited {code}")
            log.error("worker %d exited %d:\n%s", index, code, workers.tail(index))
    timelines = [
        read_timeline(path, started)
        for path, started in zip(workers.logs, workers.started_at, strict=True)
    ]
    trials = workers.trials() or []
    return Raw(
        sampler, n, budget, study_name, args.sleep, load, codes, wall, trials, timelines,
        samples, before, after, problems,
    )  # fmt: skip


def _live_pids(workers: StudyWorkers) -> list[int]:
    return [p.pid for p in workers.processes if p.returncode is None]


def summarize_configuration(raw: Raw) -> ConfigResult:
    """Count, time and check one configuration."""
    problems, notes = list(raw.problems), []
    finished = [t for t in raw.trials if t.state in FINISHED]
    failed = sum(t.state == TrialState.FAIL for t in raw.trials)
    unfinished = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in raw.trials)
    if failed:
        problems.append(f"{failed} FAIL trial(s)")
    if unfinished:
        problems.append(f"{unfinished} trial(s) left RUNNING/WAITING")
    if len(finished) < raw.budget:
        problems.append(f"{len(finished)} of {raw.budget} trials finished")
    problems += _log_problems(raw)
    window, why = steady_window(raw)
    if why:
        notes.append(why)
    begin, end = window or (float("-inf"), float("inf"))
    cycle = cycle_in(raw.timelines, begin, end)
    steady_trials = sum(begin <= at <= end for t in raw.timelines for at in t.told.values())
    rate = steady_trials / (end - begin) if window else None
    beats = _delta(raw, "heartbeat_writes")
    per_trial = beats / len(raw.trials) if raw.trials else None
    startups = [a - t.started for t in raw.timelines if (a := t.first_ask) is not None]
    first_asks = [a for t in raw.timelines if (a := t.first_ask) is not None]
    return ConfigResult(
        sampler=raw.sampler,
        workers=raw.workers,
        budget=raw.budget,
        study_name=raw.study_name,
        returncodes=raw.codes,
        load_1min_at_start=raw.load,
        wall_s=raw.wall_s,
        complete=sum(t.state == TrialState.COMPLETE for t in raw.trials),
        pruned=sum(t.state == TrialState.PRUNED for t in raw.trials),
        failed=failed,
        unfinished=unfinished,
        workers_with_trials=len(first_asks),
        startup_s_median=statistics.median(startups) if startups else None,
        all_up_s=max(first_asks) - raw.timelines[0].started if window else None,
        steady_s=end - begin if window else None,
        steady_trials=steady_trials if window else 0,
        trials_per_s=rate,
        overall_trials_per_s=len(finished) / raw.wall_s,
        efficiency=rate * raw.sleep / raw.workers if rate is not None else None,
        ask=ms_stats(cycle.ask),
        launch=ms_stats(cycle.launch),
        task=ms_stats(cycle.task),
        tell=ms_stats(cycle.tell),
        heartbeat_writes=beats,
        heartbeat_writes_per_trial=per_trial,
        heartbeat_writes_per_s=per_trial * rate if per_trial is not None and rate else None,
        db=_db_figures(raw),
        connections_max=max((s.connections for s in raw.samples), default=0),
        connections_per_worker=max((s.connections for s in raw.samples), default=0) / raw.workers,
        lock_waits_max=max((s.lock_waits for s in raw.samples), default=0),
        lock_wait_share=_share(raw.samples, lambda s: s.lock_waits > 0),
        lock_wait_events=dict(Counter(e for s in raw.samples for e in s.lock_events)),
        cpu=_cpu_figures(raw),
        workers_rss_peak_mb=max((s.workers_rss_mb for s in raw.samples), default=0.0),
        problems=problems,
        notes=notes,
    )


def steady_window(raw: Raw) -> tuple[tuple[float, float] | None, str | None]:
    """(from the last worker's first ask to the study's last ask), or None and why not."""
    first_asks = [t.first_ask for t in raw.timelines]
    asks = [at for t in raw.timelines for at in t.asked.values()]
    if not asks:
        return None, "no trial was asked"
    if None in first_asks:
        ran = sum(a is not None for a in first_asks)
        failed = sum(code != 0 for code in raw.codes)
        why = (
            f"{failed} exited with an error"
            if failed
            else "the budget was spent before the last ones had started (raise --trials-per-worker)"
        )
        return None, f"only {ran} of {raw.workers} workers ran a trial: {why}"
    begin, end = max(a for a in first_asks if a is not None), max(asks)
    if end - begin < 5 * raw.sleep:
        return None, (
            f"all {raw.workers} workers ran together for only {end - begin:.1f} s: no steady "
            "state (raise --trials-per-worker); figures over the whole run"
        )
    return (begin, end), None


def _log_problems(raw: Raw) -> list[str]:
    """The logs must account for every trial, or the latencies would be a biased sample."""
    asked = sum(len(t.asked) for t in raw.timelines)
    jobs = sum(len(t.job_started) for t in raw.timelines)
    told = sum(len(t.told) for t in raw.timelines)
    problems = []
    if asked != len(raw.trials):
        problems.append(f"the logs show {asked} asks for {len(raw.trials)} trials")
    if jobs != asked:
        problems.append(f"the logs show {jobs} job starts (job_clock) for {asked} asks")
    if told != asked:
        problems.append(f"the logs show {told} tells for {asked} asks")
    return problems


def _delta(raw: Raw, counter: str) -> int:
    return raw.after.counters[counter] - raw.before.counters[counter]


def _db_figures(raw: Raw) -> dict[str, Any]:
    n = len(raw.trials)
    # Our own monitoring queries are transactions of the same database.
    commits = _delta(raw, "commits") - (raw.after.monitor_queries - raw.before.monitor_queries)
    return {
        "transactions_per_trial": commits / n if n else None,
        "rows_returned_per_trial": _delta(raw, "returned") / n if n else None,
        "rows_fetched_per_trial": _delta(raw, "fetched") / n if n else None,
        "rollbacks": _delta(raw, "rollbacks"),
        "deadlocks": _delta(raw, "deadlocks"),
        "sessions": _delta(raw, "sessions"),
        "rows_read_per_trial_by_table": _rows_by_table(raw, n),
    }


def _rows_by_table(raw: Raw, trials: int, top: int = 4) -> dict[str, dict[str, float]]:
    """The tables whose scans read the most rows per trial: sequential and by index."""
    if not trials:
        return {}
    tables = [k.split(":", 1)[1] for k in raw.after.counters if k.startswith("seq_read:")]
    rows = {
        table: {
            "sequential": _delta(raw, f"seq_read:{table}") / trials,
            "index": _delta(raw, f"index_read:{table}") / trials,
        }
        for table in tables
        if f"seq_read:{table}" in raw.before.counters
    }
    ranked = sorted(rows.items(), key=lambda item: -sum(item[1].values()))
    return dict(ranked[:top])


def _cpu_figures(raw: Raw) -> dict[str, float]:
    cores = os.cpu_count() or 1
    workers = raw.after.workers_cpu - raw.before.workers_cpu
    postgres = raw.after.pg_cpu - raw.before.pg_cpu
    busy = raw.after.busy[0] - raw.before.busy[0]
    total = raw.after.busy[1] - raw.before.busy[1]
    span = raw.after.at - raw.before.at
    return {
        "workers_s": workers,
        "postgres_s": postgres,
        "postgres_s_per_trial": postgres / len(raw.trials) if raw.trials else 0.0,
        "ours_busy_share": (workers + postgres) / (span * cores),
        "machine_busy_share": busy / total if total else 0.0,
    }


def _share(samples: Sequence[Sample], test: Callable[[Sample], bool]) -> float:
    return sum(map(test, samples)) / len(samples) if samples else 0.0


# --- start-up, and the storage calls against the study's size --------------------------


def startup_probe(args: argparse.Namespace, stores: Stores, folder: Path) -> dict[str, Any]:
    """Wall and CPU seconds, and peak memory, of one worker alone that finds its study's
    budget spent: what every worker pays before its first trial, and again to exit."""
    study_name = f"scale-startup-{uuid.uuid4().hex[:8]}"
    workers = StudyWorkers(folder, stores, study_name, TOY_APP, toy_overrides(args, "random"))
    walls, cpus, peaks = [], [], []
    with workers:
        codes = workers.wait([workers.start(1)], timeout=args.timeout)  # runs the one trial
        for _ in range(args.startup_samples):
            cpu, begin = children_cpu(), time.perf_counter()
            process = workers.start(1)
            peaks.append(_peak_rss_mb(process))
            codes += workers.wait([process], timeout=args.timeout)
            walls.append(time.perf_counter() - begin)
            cpus.append(children_cpu() - cpu)  # the only child that ended meanwhile
    return {
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "peak_rss_mb": statistics.median(peaks),
        "samples_wall_s": walls,
        "samples_cpu_s": cpus,
        "ok": all(code == 0 for code in codes),
    }


def _peak_rss_mb(process: subprocess.Popen[bytes]) -> float:
    """The process's peak resident memory (VmHWM), read until it exits."""
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, _status_mb(process.pid, "VmHWM:"))
        time.sleep(0.05)
    return peak


PROBE_OPS = ("fail_stale", "counts", "ask", "report", "tell")


def op_probe(
    args: argparse.Namespace, url: str, sampler: str, size: int, running: int = 0
) -> dict[str, Any]:
    """Time each storage call of a trial's cycle while one study grows by `size` trials,
    with `running` trials left RUNNING beside them (as N - 1 other workers' trials are)."""
    params = OmegaConf.load(TOY_APP.parent / "config.yaml").hydra.sweeper.params
    space = parse_search_space(OmegaConf.to_container(params))
    storage = open_storage(
        url, heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period
    )
    study = optuna.create_study(
        storage=storage,
        study_name=f"scale-probe-{sampler}-{uuid.uuid4().hex[:8]}",
        sampler=instantiate(OmegaConf.structured(SAMPLERS[sampler](seed=SAMPLER_SEED))),
        pruner=instantiate(OmegaConf.structured(MedianPrunerConfig())),
    )
    for _ in range(running):  # asked and never told: still running, never stale (no beat)
        liveness.ask(study, fixed_distributions=space.distributions)
    laps: dict[str, list[float]] = {op: [] for op in PROBE_OPS}
    for _ in range(size):
        lap = _stopwatch(laps)
        liveness.fail_stale(study)
        lap("fail_stale")
        study.get_trials(deepcopy=False, states=FINISHED)
        study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        lap("counts")
        trial = liveness.ask(study, fixed_distributions=space.distributions)
        lap("ask")
        value = (trial.params["x"] - 0.3) ** 2 + 0.1 * trial.params["y"]  # the toy's objective
        trial.report(value, step=1)
        trial.should_prune()
        lap("report")
        study.tell(trial, value)
        lap("tell")
    bands = _bands(laps, size, count=4 if running == 0 else 1)
    return {"sampler": sampler, "size": size, "running": running, "bands": bands}


def _stopwatch(laps: dict[str, list[float]]) -> Callable[[str], None]:
    last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        laps[name].append(now - last)
        last = now

    return lap


def _bands(laps: dict[str, list[float]], size: int, count: int = 4) -> list[dict[str, Any]]:
    """Median milliseconds of each call in `count` bands of the study's size."""
    edges = [round(i * size / count) for i in range(count + 1)]
    bands = []
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            medians = {op: statistics.median(laps[op][lo:hi]) * 1000 for op in PROBE_OPS}
            bands.append({"trials": f"{lo}-{hi - 1}", **medians, "sum": sum(medians.values())})
    return bands


# --- the summary -------------------------------------------------------------------------


def summarize(
    args: argparse.Namespace,
    settings: dict[str, str],
    startup: dict[str, Any],
    results: list[ConfigResult],
    probes: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON-ready results, with the workers' CPU per trial net of their start-up."""
    for r in results:
        trials = r.complete + r.pruned + r.failed + r.unfinished
        net = r.cpu["workers_s"] - r.workers * startup["cpu_s"]
        r.cpu["workers_s_per_trial"] = net / trials if trials else 0.0
    return {
        "benchmark": "scale",
        "app": "tests/toy_app/app.py",
        "sleep_s": args.sleep,
        "trials_per_worker": args.trials_per_worker,
        "heartbeat_interval_s": args.heartbeat_interval,
        "grace_period_s": args.grace_period,
        "sampler_seed": SAMPLER_SEED,
        "cpu_count": os.cpu_count(),
        "postgres": settings,
        "startup": startup,
        "results": [asdict(r) for r in results],
        "probe": probes,
        "verdicts": [*scaling_verdicts(results), connection_verdict(results, settings)],
        "all_ok": startup["ok"] and all(not r.problems for r in results),
    }


def scaling_verdicts(results: list[ConfigResult]) -> list[str]:
    """Per sampler: the first doubling of N that gains less than half of the ideal."""
    lines = []
    for sampler in dict.fromkeys(r.sampler for r in results):
        rows = sorted(
            (r for r in results if r.sampler == sampler and r.trials_per_s),
            key=lambda r: r.workers,
        )
        for prev, cur in itertools.pairwise(rows):
            assert prev.trials_per_s and cur.trials_per_s
            ideal, gain = cur.workers / prev.workers, cur.trials_per_s / prev.trials_per_s
            if gain - 1 < 0.5 * (ideal - 1):
                lines.append(
                    f"{sampler}: {prev.workers} -> {cur.workers} workers gains x{gain:.2f} "
                    f"(ideal x{ideal:.1f}): it stops scaling here; at {cur.workers}: CPU busy "
                    f"{cur.cpu['machine_busy_share']:.0%} (workers + PostgreSQL "
                    f"{cur.cpu['ours_busy_share']:.0%}), ask p50 {_ms(cur.ask['p50_ms'])} ms, "
                    f"lock waits max {cur.lock_waits_max}"
                )
                break
        else:
            if rows:
                lines.append(f"{sampler}: scales up to {rows[-1].workers} workers")
    return lines


def connection_verdict(results: list[ConfigResult], settings: dict[str, str]) -> str:
    """How many workers one server admits, from the connections each one held."""
    per_worker = max((r.connections_per_worker for r in results), default=0.0)
    usable = int(settings["max_connections"]) - int(settings["superuser_reserved_connections"])
    if not per_worker:
        return "no connection was seen"
    return (
        f"up to {per_worker:.2f} connections per worker (the most seen / N); "
        f"max_connections={settings['max_connections']} "
        f"({settings['superuser_reserved_connections']} reserved) admits about "
        f"{int(usable // per_worker)} workers on one server without a pooler"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(summary: dict[str, Any], console: Console) -> None:
    """Throughput and the trial cycle; the database and CPU; the probe; the verdicts."""
    console.print(_cycle_table(summary))
    console.print(_database_table(summary))
    console.print(
        "start s: first start to the last worker's first trial; steady: from then to the last "
        "ask; eff: trials/s over N / sleep; ask: tell -> next trial asked; launch: asked -> "
        "job started; tell: job ended -> told; hb: heartbeat writes; tx: transactions; rows read: "
        "tup_returned; conns, lock waits: the most seen at once; worker CPU: net of start-up; "
        "CPU busy: the whole machine"
    )
    console.print(_probe_table(summary))
    s = summary["startup"]
    console.print(
        f"start-up of one worker alone (to exit, budget spent): {s['wall_s']:.1f} s wall, "
        f"{s['cpu_s']:.1f} s CPU, peak {s['peak_rss_mb']:.0f} MB; PostgreSQL "
        f"{summary['postgres']['server_version']}, max_connections "
        f"{summary['postgres']['max_connections']}"
    )
    for line in summary["verdicts"]:
        console.print(line)
    for r in summary["results"]:
        for line in r["problems"] + r["notes"]:
            console.print(f"{r['sampler']} N={r['workers']}: {line}")


def _cycle_table(summary: dict[str, Any]) -> Table:
    table = Table(
        title=f"{summary['sleep_s']:g} s toy trials, {summary['trials_per_worker']} per "
        f"worker, heartbeat every {summary['heartbeat_interval_s']} s: throughput and the "
        "trial cycle (ms, p50/p99)"
    )
    columns = (
        "sampler", "N", "trials", "start s", "steady s", "trials/s", "eff", "ask", "launch",
        "tell", "status",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("sampler", "status") else "right")
    for r in summary["results"]:
        table.add_row(
            r["sampler"],
            str(r["workers"]),
            str(r["complete"] + r["pruned"]),
            _num(r["all_up_s"]),
            _num(r["steady_s"]),
            _num(r["trials_per_s"], 2),
            "-" if r["efficiency"] is None else f"{r['efficiency']:.0%}",
            *(f"{_ms(r[k]['p50_ms'])}/{_ms(r[k]['p99_ms'])}" for k in ("ask", "launch", "tell")),
            "ok" if not r["problems"] else "FAIL",
        )
    return table


def _database_table(summary: dict[str, Any]) -> Table:
    table = Table(title="The database and the CPU, per trial unless said")
    columns = (
        "sampler", "N", "hb", "hb/s", "tx", "rows read", "conns", "lock waits",
        "pg CPU ms", "worker CPU ms", "CPU busy", "RSS GB",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for r in summary["results"]:
        cpu, db = r["cpu"], r["db"]
        table.add_row(
            r["sampler"],
            str(r["workers"]),
            _num(r["heartbeat_writes_per_trial"], 2),
            _num(r["heartbeat_writes_per_s"]),
            _num(db["transactions_per_trial"]),
            _num(db["rows_returned_per_trial"], 0),
            str(r["connections_max"]),
            str(r["lock_waits_max"]),
            f"{cpu['postgres_s_per_trial'] * 1000:.0f}",
            f"{cpu['workers_s_per_trial'] * 1000:.0f}",
            f"{cpu['machine_busy_share']:.0%}",
            f"{r['workers_rss_peak_mb'] / 1024:.1f}",
        )
    return table


def _probe_table(summary: dict[str, Any]) -> Table:
    table = Table(
        title="One process, no other load: the Optuna calls of a trial's cycle against the "
        "study's size and the trials running beside it (median ms)"
    )
    for column in ("sampler", "running", "trials", *PROBE_OPS, "sum"):
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for probe in summary["probe"]:
        for band in probe["bands"]:
            cells = (f"{band[op]:.1f}" for op in (*PROBE_OPS, "sum"))
            table.add_row(probe["sampler"], str(probe["running"]), band["trials"], *cells)
    return table


# --- main ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Start the services, measure start-up, each configuration and the probe; report."""
    args = parse_args(argv)
    exit_on_sigterm()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fmnist-scale-bench-"))
    try:
        with ExitStack() as stack:
            services = stack.enter_context(local_services("fmnist-scale-services-"))
            stores = Stores.of_services(services, mlflow=False)
            stack.enter_context(client_env(stores.env))  # PGPASSFILE for our own reads
            monitor = PgMonitor(stores.optuna, services.dir / "postgres")
            stack.callback(monitor.engine.dispose)
            settings = monitor.settings()
            startup = startup_probe(args, stores, workdir / "startup")
            results = []
            for sampler in dict.fromkeys(args.samplers):
                for n in sorted(set(args.workers)):
                    folder = workdir / f"{sampler}-{n}"
                    raw = run_configuration(args, sampler, n, stores, monitor, folder)
                    results.append(summarize_configuration(raw))
            size = max(args.workers) * args.trials_per_worker
            size = size if args.probe_trials is None else args.probe_trials
            probes = [op_probe(args, stores.optuna, s, size) for s in args.samplers if size > 0]
            probes += [
                op_probe(args, stores.optuna, s, args.probe_cycles, running)
                for s in args.samplers
                for running in args.probe_running
            ]
    except KeyboardInterrupt:
        log.error("interrupted: workers ended, services stopped, nothing to report")
        return 130
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(args, settings, startup, results, probes)
    publish(summary, render, args.json)
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
