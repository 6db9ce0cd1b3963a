"""README.md and docs/ stay true: what they name exists, and their figures are measured.

A newcomer runs the README top to bottom; a renamed target, config option or file, a broken
link or picture, or a figure no benchmark measured would fail them there. The commands
themselves run in the tests of what they do (train, sweep, best-eval, predict, the UI).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Options that the sweeper's schema registers in Hydra's ConfigStore, not YAML files.
STORED_OPTIONS = {
    "hydra/sweeper/sampler": {"tpe", "random", "cmaes", "gp", "qmc", "nsgaii", "grid"},
    "hydra/sweeper/pruner": {"none", "median", "percentile", "successive_halving", "hyperband"},
    "hydra/launcher": {"basic", "joblib", "submitit_slurm", "submitit_local"},
    "hydra/sweeper": {"optuna"},
}


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_links_and_pictures_point_at_what_exists(page: Path) -> None:
    text = _text(page)
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            assert target[1:] in anchors, f"{page.name}: no heading for the link {target}"
            continue
        assert (page.parent / target.split("#")[0]).exists(), f"{page.name}: {target} missing"


def test_the_readme_shows_at_least_four_pictures_made_by_make_docs_images() -> None:
    pictures = re.findall(r"!\[[^\]]+\]\((docs/images/[\w-]+\.png)\)", _text(README))
    assert len(set(pictures)) >= 4, pictures
    for picture in pictures:
        assert (ROOT / picture).stat().st_size > 10_000, picture  # a real image, not a stub


def test_every_make_target_it_names_exists() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", _text(ROOT / "Makefile"), flags=re.M))
    for page in (README, *DOCS):
        named = set(re.findall(r"`make ([a-z][\w-]*)", _text(page)))
        named |= set(re.findall(r"^make ([a-z][\w-]*)", _text(page), flags=re.M))
        assert named, page.name
        assert named <= targets, f"{page.name}: no Makefile target {named - targets}"


def test_every_config_option_it_names_exists() -> None:
    """`group=option` in the text: a YAML file of conf/<group>/, or a stored option."""
    conf = ROOT / "conf"
    groups = {str(p.relative_to(conf)) for p in conf.rglob("*") if p.is_dir()} | set(STORED_OPTIONS)
    seen = 0
    for page in (README, *DOCS):
        for group, option in re.findall(r"(?<![\w.+/])([a-z][\w/]*)=([a-z][\w]*)\b", _text(page)):
            if group not in groups:
                continue  # a key=value, not a group choice
            seen += 1
            stored = option in STORED_OPTIONS.get(group, set())
            assert stored or (conf / group / f"{option}.yaml").exists(), f"{group}={option}"
    assert seen >= 10  # the pattern still finds the README's choices


def test_every_project_file_it_names_exists() -> None:
    pattern = r"`((?:conf|bench|docs|hpo|data|models|tests)/[\w./-]*[\w/])`"
    for page in (README, *DOCS):
        for path in re.findall(pattern, _text(page)):
            assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"


def test_the_performance_figures_are_the_benchmarks_own() -> None:
    """Every accuracy and wall time in the README's Performance table is in bench/README.md,
    where each comes with its command and date."""
    section = _text(README).split("### Performance", 1)[1].split("\n### ", 1)[0]
    figures = re.findall(r"\d+\.\d+%|\d+ min \d+ s|\d+\.\d+x", section)
    assert len(figures) >= 10, figures
    bench = _text(ROOT / "bench" / "README.md")
    missing = [f for f in figures if f not in bench]
    assert not missing, f"figures in README's Performance not in bench/README.md: {missing}"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(
    ("args", "study"),
    [
        ([], None),  # the storage's most recent study, said in best-eval's output
        (["EXPERIMENT=accuracy"], "study=fmnist-accuracy"),
        (["STUDY=my-study"], "study=my-study"),
    ],
)
def test_make_best_eval_retests_the_study_the_readme_says(
    args: list[str], study: str | None
) -> None:
    command = subprocess.run(
        ["make", "-n", "--no-print-directory", "best-eval", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    ).stdout.splitlines()[-1]
    assert "hpo.retest.best_eval" in command
    passed = re.findall(r"study=\S+", command)
    assert passed == ([study] if study else []), command
