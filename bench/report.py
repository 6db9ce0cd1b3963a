"""How every benchmark script hands over its results: a rich table and, if asked, JSON."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

log = logging.getLogger("bench")


def publish(
    summary: dict[str, Any],
    render: Callable[[dict[str, Any], Console], None],
    json_path: Path | None,
) -> None:
    """Print `summary` with `render`, then write it to `json_path` when one is given."""
    # Off a terminal rich assumes 80 columns, which wraps tables and titles in logs.
    render(summary, Console() if sys.stdout.isatty() else Console(width=110))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2) + "\n")
        log.info("wrote %s", json_path)
