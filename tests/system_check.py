"""What the slow tests need from the system, checked before `make test` runs anything.

`make test` (and `make test-slow`) run this first: without PostgreSQL's server binaries
(the multi-worker tests start their own cluster) or Chromium (the MLflow UI browser test;
Playwright cannot download a browser here) the slow tests would fail minutes in, deep in
pytest's output. This stops at once with one message naming the Debian packages, and
points at `make test-fast`, which needs neither. CI installs both (`.ci/run`).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

# The project is installed in the venv (`make install`), so `hpo` imports from here too.
from hpo.services.errors import ServiceError
from hpo.services.postgres import find_bindir


def chromium(which: Callable[[str], str | None] = shutil.which) -> str | None:
    """Debian's Chromium (the browser test drives it through Playwright), or None."""
    return which("chromium")


def missing(
    which: Callable[[str], str | None] = shutil.which,
    postgres_bindir: Callable[[], Path] = find_bindir,
) -> list[tuple[str, str]]:
    """(Debian package, what needs it) for each prerequisite not found."""
    gaps = []
    try:
        postgres_bindir()
    except ServiceError:
        gaps.append(("postgresql", "the multi-worker and services tests start a cluster"))
    if chromium(which) is None:
        gaps.append(("chromium", "the MLflow UI test drives it through Playwright"))
    return gaps


def message(gaps: list[tuple[str, str]]) -> str:
    packages = " ".join(package for package, _ in gaps)
    reasons = "; ".join(f"{package}: {why}" for package, why in gaps)
    return (
        f"error: the slow tests need the Debian package(s) {packages} ({reasons}). "
        f"Install with `sudo apt-get install {packages}`, or run `make test-fast` "
        "(lint not included: `make lint`), which needs neither."
    )


def main() -> int:
    gaps = missing()
    if gaps:
        print(message(gaps), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
