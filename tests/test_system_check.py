"""`make test`'s first step: PostgreSQL and Chromium, named at once when missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import system_check

from hpo.services.errors import ServiceError

ROOT = Path(__file__).resolve().parents[1]


def _no_postgres() -> Path:
    raise ServiceError("PostgreSQL's initdb and pg_ctl were not found")


def _found() -> Path:
    return Path("/usr/lib/postgresql/15/bin")


@pytest.mark.parametrize(
    ("which", "bindir", "packages"),
    [
        (lambda name: f"/usr/bin/{name}", _found, []),
        (lambda name: None, _found, ["chromium"]),
        (lambda name: f"/usr/bin/{name}", _no_postgres, ["postgresql"]),
        (lambda name: None, _no_postgres, ["postgresql", "chromium"]),
    ],
)
def test_each_missing_package_is_named(which, bindir, packages) -> None:
    gaps = system_check.missing(which=which, postgres_bindir=bindir)
    assert [package for package, _ in gaps] == packages
    if gaps:
        text = system_check.message(gaps)
        assert f"sudo apt-get install {' '.join(packages)}" in text
        assert "make test-fast" in text


def test_the_script_passes_where_both_are_installed() -> None:
    # This machine (and CI, whose .ci/run installs both) has them: the check says nothing.
    if system_check.missing():
        pytest.skip("postgresql or chromium not installed here: the check itself would stop")
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "system_check.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_chromium_on_path_it_stops_with_the_message_and_no_traceback() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "system_check.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": ""},  # nothing found on PATH: Chromium is missing
    )
    assert done.returncode == 1
    assert "chromium" in done.stderr and "make test-fast" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
