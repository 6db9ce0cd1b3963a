"""Fixtures of the sweep room's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from toy_app.harness import ToySweep


@pytest.fixture
def toy_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ToySweep:
    """The toy task's sweep with its study in `tmp_path` (see tests/toy_app)."""
    return ToySweep(tmp_path, monkeypatch)
