"""The toy task's sweep, run in the test process: the harness of the sweeper-rule tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra_cli import run_hydra_main
from optuna.trial import TrialState
from toy_app import app as toy


class ToySweep:
    """`python tests/toy_app/app.py -m` in this process, with its study in tmp_path."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.monkeypatch = tmp_path, monkeypatch
        self.storage = f"sqlite:///{tmp_path}/optuna.db"
        self.name = "toy-rules"

    def args(self, *extra: str, n_trials: int = 3) -> list[str]:
        return [
            "-m",
            f"hydra.sweeper.storage={self.storage}",
            f"hydra.sweeper.study_name={self.name}",
            f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweep.dir={self.tmp}/multirun",
            *extra,
        ]

    def run(self, *extra: str, n_trials: int = 3) -> int:
        return run_hydra_main(self.monkeypatch, toy.main, *self.args(*extra, n_trials=n_trials))

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.storage)

    def states(self) -> list[TrialState]:
        return [t.state for t in self.study().trials]


TOY_APP = Path(__file__).resolve().parent / "app.py"


def run_worker_processes(tmp_path: Path, *args: str, workers: int = 2) -> list[str]:
    """Start `workers` sweep processes of the toy task with `args` at once (as `make worker`
    on several hosts would) and wait for them; their outputs. Each fails the test unless
    it exits 0."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(TOY_APP), "-m", *args, f"hydra.sweep.dir={tmp_path}/out-{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(workers)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * workers, outputs
    return outputs
