"""bench/scale.py end to end, small: 2 workers of the toy task on PostgreSQL, numbers sane.

Slow: it starts PostgreSQL and an MLflow server (`hpo.services.start`, which CI installs)
and three sweep processes. The benchmark runs as users run it, `python bench/scale.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SLEEP = 0.2
WORKERS = 2
PER_WORKER = 4


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("scale")
    command = [
        sys.executable, "bench/scale.py", "--workers", str(WORKERS), "--samplers", "random",
        "--trials-per-worker", str(PER_WORKER), "--sleep", str(SLEEP), "--startup-samples", "1",
        "--probe-trials", "4", "--probe-running", "3", "--probe-cycles", "2",
        "--workdir", str(out / "work"), "--json", str(out / "scale.json"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return dict(json.loads((out / "scale.json").read_text()))


def test_every_trial_of_the_budget_ran_and_the_logs_account_for_it(
    summary: dict[str, Any],
) -> None:
    (result,) = summary["results"]
    assert summary["all_ok"] and not result["problems"], result["problems"]
    # Workers asking at the same moment may each take the last trial: up to N - 1 over.
    budget = WORKERS * PER_WORKER
    assert budget <= result["complete"] + result["pruned"] <= budget + WORKERS - 1
    assert result["workers_with_trials"] >= 1
    assert result["returncodes"] == [0] * WORKERS


def test_the_trial_cycle_is_timed_from_the_logs(summary: dict[str, Any]) -> None:
    (result,) = summary["results"]
    # The task sleeps SLEEP s, which the job clock must see; the sweeper's parts are > 0.
    assert result["task"]["p50_ms"] >= SLEEP * 1000
    for part in ("ask", "launch", "tell"):
        stats = result[part]
        assert stats["n"] >= 1 and 0 < stats["p50_ms"] <= stats["p99_ms"], (part, stats)
    if result["trials_per_s"] is not None:  # no steady window when one worker started late
        assert 0 < result["trials_per_s"] <= WORKERS / SLEEP
        assert 0 < result["efficiency"] <= 1


def test_the_database_figures_come_from_postgresql(summary: dict[str, Any]) -> None:
    (result,) = summary["results"]
    # Every trial beats once when its launch starts; each worker holds a connection.
    assert result["heartbeat_writes_per_trial"] >= 1
    assert result["connections_max"] >= WORKERS
    assert result["db"]["transactions_per_trial"] >= 3  # at least ask, heartbeat, tell
    assert result["db"]["deadlocks"] == 0
    assert result["cpu"]["postgres_s"] > 0 and result["cpu"]["workers_s"] > 0
    assert int(summary["postgres"]["max_connections"]) > 0


def test_start_up_and_the_probe_are_measured(summary: dict[str, Any]) -> None:
    startup = summary["startup"]
    assert startup["ok"] and startup["wall_s"] > 0 and startup["cpu_s"] > 0
    assert startup["peak_rss_mb"] > 20  # a Python process importing Optuna and Hydra
    growing, beside_running = summary["probe"]
    assert (growing["running"], len(growing["bands"])) == (0, 4)  # a band per quarter
    assert (beside_running["running"], len(beside_running["bands"])) == (3, 1)
    for band in growing["bands"] + beside_running["bands"]:
        assert all(band[op] > 0 for op in ("fail_stale", "counts", "ask", "report", "tell"))
