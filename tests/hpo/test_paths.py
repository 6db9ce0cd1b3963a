from __future__ import annotations

from pathlib import Path

import pytest

from hpo.paths import PROJECT_ROOT, sqlite_database


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////abs/dir/optuna.db", Path("/abs/dir/optuna.db")),
        ("sqlite:///rel/optuna.db", Path("rel/optuna.db")),
        ("sqlite:///optuna.db?timeout=5", Path("optuna.db")),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("postgresql://user@host/db", None),
        ("http://127.0.0.1:5000", None),
    ],
)
def test_sqlite_database(url: str, expected: Path | None) -> None:
    assert sqlite_database(url) == expected


def test_project_root_is_the_checkout() -> None:
    assert (PROJECT_ROOT / "train.py").is_file()
    assert (PROJECT_ROOT / "conf" / "config.yaml").is_file()
