"""What a sweep leaves behind: the results file, the parent run, Optuna's plots, the summary."""

from __future__ import annotations

import logging

import matplotlib
import matplotlib.pyplot as plt
import optuna
import pytest
from matplotlib.figure import Figure

from hpo.sweep import report


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    width = trial.suggest_categorical("width", [8, 16])
    for step in (1, 2):
        trial.report(x * step, step)
    return x + width / 100


@pytest.fixture
def study() -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=4)
    return study


def test_study_figures_draws_each_plot_and_leaves_pyplot_as_it_was(study) -> None:
    plt.ion()  # as in an interactive session: a figure drawn now would be shown
    rc_before = dict(matplotlib.rcParams)
    try:
        with report.study_figures(study) as figures:
            names = [name for name, _ in figures]
            assert all(isinstance(figure, Figure) for _, figure in figures)
            assert plt.get_fignums()  # pyplot holds Optuna's figures while the block runs
        assert names == [
            "optimization_history",
            "param_importances",
            "parallel_coordinate",
            "intermediate_values",
        ]
        assert plt.get_fignums() == []  # none left in pyplot's figure manager
        assert plt.isinteractive()  # interactive mode given back
        # Optuna's plt.style.use("ggplot") is undone: later figures keep their own style.
        assert dict(matplotlib.rcParams) == rc_before
    finally:
        plt.ioff()


def test_plots_are_drawn_with_interactive_mode_off_and_a_failed_one_leaks_nothing(
    study, monkeypatch, caplog
) -> None:
    seen = []

    def half_drawn(*args: object, **kwargs: object) -> None:
        seen.append(plt.isinteractive())
        plt.figure()  # what a plot opens before it fails
        raise RuntimeError("no importances today")

    monkeypatch.setattr(report.optuna_plots, "plot_param_importances", half_drawn)
    plt.ion()
    try:
        with (
            caplog.at_level(logging.INFO, logger=report.__name__),
            report.study_figures(study) as figures,
        ):
            assert "param_importances" not in [name for name, _ in figures]
    finally:
        plt.ioff()
    assert seen == [False]  # no window may open while Optuna draws
    assert plt.get_fignums() == []
    assert "Skipped the param_importances plot: RuntimeError: no importances today" in caplog.text


def test_a_study_without_a_completed_trial_has_no_plots(caplog) -> None:
    study = optuna.create_study()
    study.ask()
    with (
        caplog.at_level(logging.INFO, logger=report.__name__),
        report.study_figures(study) as figures,
    ):
        assert figures == []
    assert "Skipped the optimization_history plot: no completed trial yet" in caplog.text
