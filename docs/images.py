"""`make docs-images`: the README's pictures, made by the project's own tools from real runs.

    .venv/bin/python docs/images.py [--study fmnist-accuracy] [--out docs/images]
        [--storage sqlite:///.../optuna.db] [--tracking sqlite:///.../mlflow.db]
        [--reports reports] [--only NAME ...]

- `mlflow-runs.png`: `mlflow ui` on the tracking store in headless Chromium (Playwright, as
  the browser test drives it), on the runs table that `make ui` links to, with the study's
  parent run unfolded and the columns a user adds to compare trials;
- `optimization-history.png`: Optuna's optimization-history plot of the study, drawn as the
  sweeper draws it for the parent run (`hpo.sweep.report.study_figures`);
- `confusion-matrix.png`: best-eval's confusion matrix of the study's best trial
  (`reports/<study>/confusion_matrix.png`);
- `workers.png`: several workers with PostgreSQL and the MLflow server, drawn with matplotlib.

The first three need a real sweep of the study and its `make best-eval`; each one whose
input is missing says which command makes it (exit 2). Chromium is Debian's `chromium`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from hpo.errors import UsageError, exit_on_user_error
from hpo.paths import PROJECT_ROOT
from hpo.retest.best_trial import BestEvalError, load_study
from hpo.services.mlflow_server import mlflow_executable, request_status
from hpo.services.processes import wait_for
from hpo.sweep.report import study_figures
from hpo.tracking.runs import tracking_client
from hpo.tracking.settings import TrackingSettings
from hpo.tracking.ui import find_experiment_id, runs_url
from hpo.urls import SecretUrl

log = logging.getLogger("docs.images")

IMAGES = ("mlflow-runs", "optimization-history", "confusion-matrix", "workers")
DEFAULT_STUDY = "fmnist-accuracy"
# The MLflow experiment every run goes to (conf/tracking/mlflow.yaml).
EXPERIMENT = "fashion-mnist"
WAIT_MS = 60_000
# The runs table's columns the picture adds (a metric and two tags) and hides (attributes).
SHOWN_COLUMNS = ("best/val/acc", "trial_state", "fidelity_budget")
HIDDEN_COLUMNS = ("Dataset", "Source", "Models")


class MissingInputError(UsageError):
    """A picture's input (a sweep, a best-eval report, Chromium) is not there yet."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python docs/images.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--study", default=DEFAULT_STUDY, help="the study the pictures show")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "images")
    parser.add_argument("--storage", default=f"sqlite:///{PROJECT_ROOT / 'optuna.db'}")
    parser.add_argument("--tracking", default=f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")
    parser.add_argument("--reports", type=Path, default=PROJECT_ROOT / "reports")
    parser.add_argument("--only", nargs="+", choices=IMAGES, default=list(IMAGES))
    return parser.parse_args(argv)


def workers_diagram(out: Path) -> Path:
    """Several sweep processes sharing one study: what `make services` + `make worker` run."""
    figure = Figure(figsize=(9.6, 4.4), dpi=120)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 5.5)
    ax.axis("off")

    def box(x: float, y: float, w: float, h: float, title: str, body: str, colour: str) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x, y), w, h, boxstyle="round,pad=0.05,rounding_size=0.15",
                facecolor=colour, edgecolor="#333333", linewidth=1.2,
            )
        )  # fmt: skip
        ax.text(x + w / 2, y + h - 0.3, title, ha="center", va="top", weight="bold", size=11)
        ax.text(x + w / 2, y + h - 0.75, body, ha="center", va="top", size=8.5, linespacing=1.4)

    def arrow(start: tuple[float, float], end: tuple[float, float], label: str) -> None:
        ax.add_patch(
            FancyArrowPatch(
                start, end, arrowstyle="<|-|>", mutation_scale=12, color="#555555", linewidth=1.1
            )
        )
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        ax.text(*mid, label, ha="center", va="center", size=7.5, backgroundcolor="white")

    # The workers: any number, on any host, all running the same command.
    ax.add_patch(
        FancyBboxPatch(
            (0.15, 0.45), 4.0, 4.9, boxstyle="round,pad=0.05,rounding_size=0.2",
            facecolor="none", edgecolor="#777777", linestyle="--", linewidth=1.0,
        )
    )  # fmt: skip
    ax.text(2.15, 5.25, "workers (sweep processes)", ha="center", va="top", size=9, style="italic")
    workers = [
        ("host A: make worker", "train.py -m experiment=...\nsweeper + one trial at a time"),
        ("host B: make worker", "the same command\n(one per GPU: trainer.device)"),
        ("SLURM login node", "hydra/launcher=submitit_slurm\neach trial one job"),
    ]
    for i, (title, body) in enumerate(workers):
        box(0.35, 3.45 - i * 1.5, 3.6, 1.3, title, body, "#dbe9f6")
    study = "make services (.services/)\nOptuna storage: trials,\nparams, heartbeats, rungs"
    box(7.6, 3.2, 4.0, 2.0, "PostgreSQL: the study", study, "#e3f1df")
    runs = "one parent run per study,\na nested run per trial:\nmetrics, weights, plots;\n"
    box(7.6, 0.45, 4.0, 2.2, "mlflow server", runs + "the model registry", "#fbe5d6")
    arrow((4.25, 4.2), (7.55, 4.2), "ask / tell, heartbeats")
    arrow((4.25, 1.55), (7.55, 1.55), "log runs, artifacts")
    ax.text(
        6, 0.0, "Each worker runs the same command on the same storage and study name; "
        "n_trials is the study's total.", ha="center", va="bottom", size=8, style="italic",
    )  # fmt: skip
    path = out / "workers.png"
    figure.savefig(path)
    return path


def optimization_history(storage: SecretUrl, study_name: str, out: Path) -> Path:
    """The study's optimization history, as the sweeper logs it to the parent run."""
    study = _load_study(storage, study_name)
    with study_figures(study) as figures:
        drawn = dict(figures)
        if "optimization_history" not in drawn:
            raise MissingInputError(
                f"study {study_name!r} has no complete trial yet to plot: let its sweep finish"
            )
        path = out / "optimization-history.png"
        drawn["optimization_history"].savefig(path, dpi=110, bbox_inches="tight")
    return path


def confusion_matrix(reports: Path, study_name: str, out: Path) -> Path:
    """best-eval's confusion matrix of the study's best trial."""
    source = reports / study_name / "confusion_matrix.png"
    if not source.exists():
        raise MissingInputError(
            f"no {source}: run `make best-eval STUDY={study_name}` (with `ARGS=retrain=true` "
            "for the retrained model) first"
        )
    return Path(shutil.copyfile(source, out / "confusion-matrix.png"))


def mlflow_runs(tracking: SecretUrl, study_name: str, out: Path) -> Path:
    """The runs table in the MLflow UI, the study's parent run unfolded to its trials."""
    from playwright.sync_api import sync_playwright

    settings = TrackingSettings(uri=tracking, experiment=EXPERIMENT)
    experiment = find_experiment_id(settings)
    its_parent_run = f"attributes.run_name = '{study_name}'"
    client = tracking_client(tracking)
    if experiment is None or not client.search_runs([experiment], its_parent_run, max_results=1):
        raise MissingInputError(
            f"no MLflow run of study {study_name!r} in {tracking}: run its sweep first "
            f"({_sweep_hint(study_name)})"
        )
    chromium = shutil.which("chromium")
    if chromium is None:
        raise MissingInputError(
            "Chromium not found: install Debian's `chromium` (sudo apt-get install chromium)"
        )
    with serve_mlflow_ui(tracking) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            # Wide enough for the runs table's name, date, duration and the added columns.
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.set_default_timeout(WAIT_MS)
            page.goto(runs_url(base, experiment))
            grid = page.locator('[role="gridcell"][col-id="attributes.`Run Name`"]')
            grid.first.wait_for()
            page.get_by_role("button", name="Close").click()  # the AI assistant's side panel
            _choose_columns(page)
            parent = grid.filter(has=page.get_by_text(study_name, exact=True))
            parent.first.get_by_role("button").first.click()  # the `+` that unfolds trials
            grid.get_by_text(f"{study_name}-trial-0000", exact=True).wait_for()
            page.wait_for_timeout(1500)  # charts and column widths settle
            path = out / "mlflow-runs.png"
            page.screenshot(path=str(path))
        finally:
            browser.close()
    return path


def _choose_columns(page: Any) -> None:
    """What a user adds to compare trials (the best validation accuracy, the trial's state
    and budget), and off what says nothing here (no datasets, sources or models per trial).
    Assumes the UI's default columns, as in a fresh browser."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.get_by_role("button", name="Columns").click()
    search = page.get_by_placeholder("Search columns")
    # Each click toggles one column; the list is the page's last element (a portal), after
    # the table's own header cells of the same names.
    for column in (*SHOWN_COLUMNS, *HIDDEN_COLUMNS):
        search.fill(column)
        entry = page.get_by_text(column, exact=True).last
        try:
            entry.wait_for(timeout=5_000)
        except PlaywrightTimeout:  # e.g. no fidelity_budget tag: a study without fidelity
            log.info("no column %r in this store: left out", column)
            continue
        entry.click()
    page.keyboard.press("Escape")


@contextmanager
def serve_mlflow_ui(tracking: SecretUrl) -> Iterator[str]:
    """`mlflow ui` on the store, on a free local port: its address once healthy (also the
    browser test's server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    command = [
        str(mlflow_executable()), "ui", "--backend-store-uri",
        tracking.reveal(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with tempfile.TemporaryFile("w+") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            health = f"{base}/health"
            wait_for(lambda: server.poll() is not None or request_status(health) == 200, 120)
            if request_status(health) != 200:
                log_file.seek(0)
                raise RuntimeError(f"mlflow ui at {base} is not up:\n{log_file.read()[-3000:]}")
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


def _load_study(storage: SecretUrl, study_name: str) -> optuna.Study:
    """The study, opened as best-eval opens it (creating nothing)."""
    try:
        return load_study(study_name, storage)
    except BestEvalError as exc:
        raise MissingInputError(f"{exc}; this one: {_sweep_hint(study_name)}") from exc


def _sweep_hint(study_name: str) -> str:
    """The command that makes `study_name` (fmnist-<experiment>)."""
    return f"`make sweep EXPERIMENT={study_name.removeprefix('fmnist-')}`"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    storage, tracking = SecretUrl(args.storage), SecretUrl(args.tracking)
    makers: dict[str, Callable[[], Path]] = {
        "mlflow-runs": lambda: mlflow_runs(tracking, args.study, args.out),
        "optimization-history": lambda: optimization_history(storage, args.study, args.out),
        "confusion-matrix": lambda: confusion_matrix(args.reports, args.study, args.out),
        "workers": lambda: workers_diagram(args.out),
    }
    with exit_on_user_error(log):
        if {"mlflow-runs", "optimization-history"} & set(args.only):
            _load_study(storage, args.study)  # before a browser starts: is there a study?
        for name in args.only:
            log.info("wrote %s", makers[name]())
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
