"""The rooms of `hpo/` keep their promises: who may import what, no cycles, no private API."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("training", "tracking", "sweep", "retest")
# Each room may import the rooms before it in this order, never those after it.
ORDER = {room: i for i, room in enumerate(ROOMS)}
FRAMEWORKS = ("hydra", "omegaconf", "optuna", "mlflow")
SOURCE_DIRS = ("hpo", "data", "models", "hydra_plugins", "bench")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module `path` imports (for `from a import b`, both `a` and `a.b`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


HPO_MODULES = {_module_name(p): p for p in _sources("hpo")}


def _hpo_graph() -> dict[str, set[str]]:
    return {
        name: {m for m in _imports(path) if m in HPO_MODULES and m != name}
        for name, path in HPO_MODULES.items()
    }


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


def test_every_room_has_a_docstring_saying_what_it_may_import() -> None:
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((ROOT / "hpo" / room / "__init__.py").read_text()))
        assert doc and "import" in doc, f"hpo/{room}/__init__.py needs its docstring"


def test_no_import_cycle_under_hpo() -> None:
    graph = _hpo_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


def test_arrows_between_rooms_run_one_way() -> None:
    wrong = []
    for module, targets in _hpo_graph().items():
        room = _room(module)
        for target in targets:
            other = _room(target)
            if room and other and ORDER[other] > ORDER[room]:
                wrong.append(f"{module} imports {target}")
            # hpo.errors (standard library only) is the error base every room raises from.
            if room == "training" and other is None and target not in ("hpo", "hpo.errors"):
                wrong.append(f"{module} imports {target}: training imports no other hpo module")
    assert not wrong, "\n".join(wrong)


def test_services_stand_apart_from_the_rooms() -> None:
    """`make services` starts servers; it must not drag in training, tracking or sweeps, and
    no room depends on it (workers only get URLs)."""
    wrong = []
    for module, targets in _hpo_graph().items():
        services = module.startswith("hpo.services")
        for target in targets:
            if services and _room(target) is not None:
                wrong.append(f"{module} imports {target}")
            if not services and target.startswith("hpo.services"):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_training_imports_no_framework() -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _sources("hpo/training")
        for name in _imports(path)
        if name.split(".")[0] in FRAMEWORKS
    ]
    assert not bad, "\n".join(bad)


def test_training_room_loads_without_the_frameworks() -> None:
    """At run time too: importing every training module pulls in none of them."""
    modules = [m for m in HPO_MODULES if _room(m) == "training"]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_only_the_tracking_room_imports_mlflow() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in [*_sources(*SOURCE_DIRS), ROOT / "train.py"]
        if any(name.split(".")[0] == "mlflow" for name in _imports(path))
    }
    assert importers and all(p.startswith("hpo/tracking/") for p in importers), importers


def test_no_private_hydra_job_api() -> None:
    users = [
        str(p.relative_to(ROOT))
        for p in [*_sources(*SOURCE_DIRS), ROOT / "train.py"]
        if "_return_value" in p.read_text()
    ]
    assert not users


def test_the_test_set_is_read_only_in_the_retest_room() -> None:
    # bench/time_to_accuracy.py reads it too, on purpose: it reproduces a published
    # test-set figure and selects nothing.
    readers = {
        str(p.relative_to(ROOT))
        for p in [*_sources("hpo", "models", "hydra_plugins"), ROOT / "train.py"]
        if "load_test" in p.read_text()
    }
    assert readers and all(r.startswith("hpo/retest/") for r in readers), readers


def test_no_module_picks_a_matplotlib_backend() -> None:
    """A backend switch in a library module changes its host's plots (a notebook's inline
    figures) when imported: figures are plain `Figure`s, or Optuna's drawn under `plt.ioff`."""
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in [*_sources(*SOURCE_DIRS), ROOT / "train.py"]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and (
            node.func.attr == "switch_backend"
            or (
                node.func.attr == "use"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "matplotlib"
            )
        )
    ]
    assert not calls, calls
