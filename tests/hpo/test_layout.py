"""The rooms of `hpo/` keep their promises: who may import what, no cycles, no private API."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator
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


def _private(name: str) -> bool:
    """`_name`, not a dunder and not a Hydra config key such as `_target_`."""
    return name.startswith("_") and not name.endswith("_")


def _own_names(trees: Iterable[ast.AST]) -> set[str]:
    """Every name our code defines or binds: its private ones are ours to use."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return names


# Private-looking names that are public API, each with where it is documented.
PUBLIC_UNDERSCORE_API = {
    # collections.namedtuple's documented methods carry a leading underscore so they cannot
    # clash with field names (urllib.parse's SplitResult is one).
    "_replace": "namedtuple._replace",
    "_asdict": "namedtuple._asdict",
}


def _private_uses(path: Path, tree: ast.AST, own: set[str]) -> Iterator[str]:
    top_packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if any(_private(part) for part in alias.name.split(".")):
                    yield f"{where} imports {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in top_packages:
                continue  # our own modules may share their private helpers
            if any(_private(part) for part in node.module.split(".")):
                yield f"{where} imports from {node.module}"
            for alias in node.names:
                if _private(alias.name):
                    yield f"{where} imports {alias.name} from {node.module}"
        elif (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and node.attr not in own
            and node.attr not in PUBLIC_UNDERSCORE_API
        ):
            yield f"{where} reads {ast.unparse(node)}"


def test_no_private_api_of_other_packages() -> None:
    """No import of a `_private` module of Hydra, Optuna, MLflow and the rest (such as
    `hydra._internal`), and no `obj._name` that our own code does not define (such as
    Optuna's `trial._trial_id` or Hydra's `JobReturn._return_value`): private API changes
    without notice. Hydra config keys (`_target_`) are public."""
    paths = [*_sources(*SOURCE_DIRS), ROOT / "train.py"]
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in paths}
    own = _own_names(trees.values())
    uses = [use for path, tree in trees.items() for use in _private_uses(path, tree, own)]
    assert not uses, "\n".join(uses)


@pytest.mark.parametrize(
    ("code", "found"),
    [
        (
            "from hydra._internal.core_plugins import basic_launcher",
            "imports from hydra._internal.core_plugins",
        ),
        ("import optuna._imports", "imports optuna._imports"),
        ("from optuna.trial import _trial", "imports _trial from optuna.trial"),
        ("trial_id = trial._trial_id", "reads trial._trial_id"),
        ("value = result._return_value", "reads result._return_value"),
    ],
)
def test_the_private_api_check_finds_each_kind(code: str, found: str) -> None:
    uses = list(_private_uses(ROOT / "x.py", ast.parse(code), own=set()))
    assert uses == [f"x.py:1 {found}"]


def test_the_private_api_check_allows_our_own_and_public_names() -> None:
    code = (
        "from hpo.sweep.liveness import _storage_id\n"
        "self._lock = None\n"
        "url = parts._replace(netloc='x')\n"
        "target = cfg.model._target_\n"
    )
    tree = ast.parse(code)
    assert list(_private_uses(ROOT / "x.py", tree, own=_own_names([tree]))) == []


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


def test_one_mlflow_client_factory() -> None:
    """`hpo.tracking.runs.tracking_client` is the one place an MlflowClient is made (and the
    one place the tracking URI's password is revealed to it)."""
    makers = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in [*_sources(*SOURCE_DIRS), ROOT / "train.py"]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "MlflowClient"
    ]
    assert len(makers) == 1 and makers[0].startswith("hpo/tracking/runs.py:"), makers


def test_the_sweeper_loads_without_mlflow() -> None:
    """Every sweep process imports the sweeper; MLflow (over a second and a few hundred MB
    to import) loads only once a sweep records to it."""
    code = "import sys\nimport hpo.sweep.sweeper\nprint('mlflow' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
