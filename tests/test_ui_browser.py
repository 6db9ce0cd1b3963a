"""The MLflow UI as a newcomer meets it, in a real browser (marked slow: about a minute).

A tiny sweep into a tmp store, `mlflow ui` on it, and headless Chromium on the link that
`make ui` prints: it must open the runs table with the study's parent run and, once
expanded, its trial runs (not MLflow 3.17's GenAI overview, where a run-less experiment
opens by default). Needs Debian's Chromium (`apt-get install chromium`): Playwright cannot
download its own browser here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import system_check
from hydra_cli import run_train_cli

from hpo.urls import SecretUrl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
import images  # docs/ is a folder of scripts, not a package

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
STUDY = "ui-study"
TRIALS = 2
# Milliseconds the page may take to show something: generous, the CI machine has 2 cores.
WAIT_MS = 60_000


def _chromium() -> str:
    path = system_check.chromium()
    if path is None:
        pytest.fail(
            "Chromium not found on PATH: this test drives Debian's Chromium through "
            "Playwright; install it with `sudo apt-get install chromium`"
        )
    return path


@pytest.fixture
def swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd) -> tuple[str, str]:
    """A 2-trial sweep on synthetic data: (its MLflow store, the summary's output)."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    code = run_train_cli(
        monkeypatch,
        "-m",
        "hydra/sweeper=optuna",
        "debug=tiny",
        "trainer.epochs=1",  # the page is what is tested, not the training
        # Out of the default space (it samples them), at debug=tiny's sizes.
        "model.width=8",
        "model.depth=2",
        f"hydra.sweeper.n_trials={TRIALS}",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
        f"hydra.sweeper.study_name={STUDY}",
        f"tracking.uri={store}",
        f"hydra.sweep.dir={tmp_path}/multirun",
    )
    out, err = capfd.readouterr()
    assert code == 0, out + err
    return store, out


@pytest.fixture
def mlflow_ui(swept: tuple[str, str]) -> Iterator[str]:
    """`mlflow ui` on the sweep's store, on a free port (as `make docs-images` serves it)."""
    with images.serve_mlflow_ui(SecretUrl(swept[0])) as base:
        yield base


def _printed_link(store: str, base: str) -> str:
    """What `make ui` prints (its own entry point, pointed at this store and port)."""
    out = subprocess.run(
        [sys.executable, "-m", "hpo.tracking.ui", "--ui", base, f"tracking.uri={store}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"(http://\S+)", out)
    assert found, out
    return found.group(1)


def test_printed_link_opens_the_runs_table_with_the_trials_nested(swept, mlflow_ui) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = _chromium()
    store, summary = swept
    url = _printed_link(store, mlflow_ui)
    # The sweep's summary gives the same route (for the UI on the default port).
    summary_link = re.search(r"MLflow UI: .*?(http://\S+)", summary)
    assert summary_link, summary
    assert summary_link.group(1).split("#", 1)[1] == url.split("#", 1)[1]

    trials = [f"{STUDY}-trial-{n:04d}" for n in range(TRIALS)]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(WAIT_MS)
            page.goto(url)
            grid = page.locator('[role="gridcell"][col-id="attributes.`Run Name`"]')
            parent = grid.filter(has=page.get_by_text(STUDY, exact=True))
            expect(parent).to_have_count(1, timeout=WAIT_MS)
            # Not the GenAI overview (where MLflow 3.17 opens an experiment by default).
            assert "/overview" not in page.url and "/runs" in page.url, page.url
            expect(grid.get_by_text(trials[0], exact=True)).to_have_count(0)  # folded
            parent.get_by_role("button").first.click()  # the `+` that expands its children
            for name in trials:
                expect(grid.get_by_text(name, exact=True)).to_be_visible(timeout=WAIT_MS)
        finally:
            browser.close()


def test_docs_images_draws_the_runs_table_of_a_real_sweep(swept, tmp_path: Path) -> None:
    """`make docs-images`'s screenshot on this sweep's store: the README's first picture."""
    from matplotlib.image import imread

    _chromium()
    path = images.mlflow_runs(SecretUrl(swept[0]), STUDY, tmp_path)
    picture = imread(path)
    assert picture.shape[:2] == (760, 1280)
    assert picture[..., :3].std() > 0.05  # a rendered page, not a blank one
