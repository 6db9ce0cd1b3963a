"""SQLite URLs (`sqlite:///relative.db`, `sqlite:////absolute/path.db`) to file paths."""

from __future__ import annotations

from pathlib import Path

_PREFIX = "sqlite:///"


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other URLs or in-memory SQLite.

    `urlparse` cannot be used: it reads the absolute form's path as `//absolute/path.db`.
    """
    if not url.startswith(_PREFIX):
        return None
    path = url[len(_PREFIX) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None
