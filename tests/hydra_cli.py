"""Run `@hydra.main` entry points in the test process (no interpreter start-up per run).

A plain module, not conftest.py: `tests/data/conftest.py` would shadow `import conftest`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import pytest
from hydra.core.global_hydra import GlobalHydra


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
