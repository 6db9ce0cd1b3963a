"""bench/levers.py as users run it (`python bench/levers.py`), on the tiny synthetic debug run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _levers(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "bench/levers.py", "--epochs", "1", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_arms_are_trained_kept_paired_and_never_trained_twice(tmp_path: Path) -> None:
    kept = tmp_path / "levers.json"
    arms = [
        "--arm", "base", "debug=tiny",
        "--arm", "identity", "debug=tiny", "model.identity_init=true",
    ]  # fmt: skip
    done = _levers("--seeds", "3", *arms, "--json", str(kept))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = json.loads(kept.read_text())["runs"]
    assert set(runs) == {"base", "identity"}
    base, identity = runs["base"]["3"], runs["identity"]["3"]
    assert identity["overrides"] == ["debug=tiny", "model.identity_init=true"]
    assert base["epochs"] == identity["epochs"] == 1 and base["seed"] == 3
    assert 0.0 < base["val"] <= 1.0 and base["wall_s"] > 0
    # The second arm's row carries its difference from the first, seed by seed.
    diff = (identity["val"] - base["val"]) * 100
    assert f"{diff:+.2f} pts" in done.stdout

    # Resumed with every result in the file: nothing trains (the data would be loaded), and
    # the table still shows both arms.
    again = _levers("--seeds", "3", *arms, "--json", str(kept))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Loading data" not in again.stderr + again.stdout
    assert "identity" in again.stdout and f"{base['val']:.2%}" in again.stdout

    # The same name with other overrides is another lever: refused, the file kept.
    other = _levers("--seeds", "3", "--arm", "base", "debug=tiny", "seed=5", "--json", str(kept))
    assert other.returncode != 0 and "give this arm another name" in other.stderr
    assert json.loads(kept.read_text())["runs"] == runs


def test_arm_names_must_differ() -> None:
    done = _levers("--arm", "a", "debug=tiny", "--arm", "a", "debug=tiny")
    assert done.returncode == 2 and "arm names must differ" in done.stderr
