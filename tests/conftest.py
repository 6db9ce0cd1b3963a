"""Shared fixtures: Hydra configs composed from conf/, shrunk to tiny runs in tmp_path."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from hpo.resolvers import register_resolvers

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

ComposeFn = Callable[..., DictConfig]


@pytest.fixture
def compose_cfg(tmp_path: Path) -> ComposeFn:
    """Compose conf/ with tiny-run defaults (synthetic data, 1 epoch, tmp MLflow store)."""
    register_resolvers()

    def _compose(*overrides: str, tiny: bool = True) -> DictConfig:
        base = [
            "data=synthetic",
            "trainer.epochs=1",
            "trainer.batch_size=64",
            "trainer.eval_batch_size=256",
            "trainer.progress=false",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=[*(base if tiny else []), *overrides])

    return _compose


def run_train_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run `python train.py ARGS` in this process (no interpreter start-up); the exit code."""
    import train

    return run_hydra_main(monkeypatch, train.main, *args)


def run_hydra_main(monkeypatch: pytest.MonkeyPatch, main: Callable[[], object], *args: str) -> int:
    """Run a `@hydra.main` function with command-line `args` in this process; the exit code."""
    monkeypatch.setattr(sys, "argv", ["prog", *args])
    GlobalHydra.instance().clear()
    # Hydra reconfigures logging for the app; later tests must not log into its streams.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        GlobalHydra.instance().clear()
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()  # e.g. the job's .log file
        root.handlers[:] = handlers
        root.setLevel(level)
    return 0
