"""What a sweep leaves behind: the results file, the parent run, Optuna's plots, the summary."""

from __future__ import annotations

import logging

import matplotlib
import matplotlib.pyplot as plt
import optuna
import pytest
import yaml
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from ports import free_port

from hpo.sweep import report
from hpo.sweep.liveness import RUN_ID_ATTR, WORKER_ATTR
from hpo.sweep.progress import SweepProgress
from hpo.tracking.runs import open_run, tracking_client
from hpo.urls import SecretUrl


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


# --- the results file ---------------------------------------------------------------------


def _study(directions: list[str], values: list[list[float]]) -> optuna.Study:
    study = optuna.create_study(directions=directions)
    for v in values:
        study.add_trial(
            create_trial(values=v, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})
        )
    return study


def test_results_name_the_best_trial() -> None:
    results = report.optimization_results(_study(["maximize"], [[0.8], [0.9], [0.85]]))
    assert results == {
        "name": "optuna",
        "best_trial": 1,
        "best_params": {"x": 0.5},
        "best_value": 0.9,
    }


def test_results_of_several_objectives_are_the_pareto_front() -> None:
    study = _study(["maximize", "minimize"], [[0.9, 500], [0.8, 100], [0.7, 200]])
    solutions = report.optimization_results(study)["solutions"]
    assert [(s["number"], s["values"]) for s in solutions] == [(0, [0.9, 500]), (1, [0.8, 100])]


def test_results_without_a_completed_trial_are_empty() -> None:
    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.FAIL))
    assert report.optimization_results(study) == {
        "name": "optuna",
        "best_params": {},
        "best_value": None,
    }


# --- the parent run and the child runs ---------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the module: creating one takes MLflow seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('report')}/mlflow.db"


def _config(uri: str, *, enabled: bool = True, link: bool = True) -> DictConfig:
    node: dict[str, object] = {"tracking": {"enabled": enabled, "uri": uri, "experiment": "rep"}}
    if link:
        node["hpo"] = None  # the app takes part in sweeps
    return OmegaConf.create(node)


def test_tracking_settings_only_for_apps_that_take_part(store: str) -> None:
    assert report.tracking_settings(None) is None
    assert report.tracking_settings(_config(store, link=False)) is None
    assert report.tracking_settings(_config(store, enabled=False)) is None
    settings = report.tracking_settings(_config(store))
    assert settings is not None and settings.experiment == "rep"


def test_the_creating_worker_opens_the_parent_run_and_a_joining_one_finds_it(store) -> None:
    study = optuna.create_study(study_name="parent", direction="maximize")
    run = report.open_parent_run(_config(store), study, None, created=True)
    assert run is not None
    assert study.user_attrs[report.PARENT_RUN_ATTR] == run.run_id
    tags = tracking_client(store).get_run(run.run_id).data.tags
    assert tags["sweep_role"] == "study" and tags["study_name"] == "parent"
    assert tags["optuna_storage"] == "memory" and tags["directions"] == "maximize"
    other = optuna.create_study(study_name="parent-pg")
    storage = SecretUrl("postgresql+psycopg://fmnist:s3cret@db/optuna")
    pg_run = report.open_parent_run(_config(store), other, storage, created=True)
    assert pg_run is not None
    tags = tracking_client(store).get_run(pg_run.run_id).data.tags
    assert tags["optuna_storage"] == "postgresql+psycopg://fmnist:***@db/optuna"
    joined = report.open_parent_run(_config(store), study, None, created=False)
    assert joined is not None and joined.run_id == run.run_id


def test_finish_writes_results_fills_and_ends_the_parent_run(store, study, tmp_path) -> None:
    parent = report.open_parent_run(_config(store), study, None, created=True)
    assert parent is not None
    report.finish(study, SweepProgress(), parent, tmp_path / "sweep")

    results = yaml.safe_load((tmp_path / "sweep" / report.RESULTS_FILE).read_text())
    assert results["best_value"] == pytest.approx(study.best_value)
    client = tracking_client(store)
    run = client.get_run(parent.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert run.data.metrics["trials/complete"] == 4
    assert run.data.tags["best_trial"] == str(study.best_trial.number)
    artifacts = {a.path for a in client.list_artifacts(parent.run_id)}
    assert {report.RESULTS_FILE, report.TRIALS_ARTIFACT, "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    assert plt.get_fignums() == []


def _trial_run(store: str, study_name: str, number: int) -> str:
    settings = report.tracking_settings(_config(store))
    assert settings is not None
    tags = {"study_name": study_name, "trial_number": str(number)}
    with open_run(settings, tags=tags) as run:
        assert run is not None
        return run.run_id


def test_child_runs_get_the_trial_state_and_the_retry(store) -> None:
    run_id = _trial_run(store, "tags", 3)
    report.tag_child_run(_config(store), "tags", 3, "PRUNED")
    report.tag_retried_run(_config(store), run_id, 7)
    tags = tracking_client(store).get_run(run_id).data.tags
    assert tags["trial_state"] == "PRUNED" and tags["retried_as_trial"] == "7"


def test_a_lost_tracking_server_costs_the_tag_not_the_sweep(monkeypatch, caplog) -> None:
    # MLflow retries a lost server for minutes by default; the outcome is the same at once.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    config = _config(f"http://user:s3cret-pw@127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING, report.__name__):
        report.tag_child_run(config, "lost", 1, "COMPLETE")  # does not raise
    (record,) = [r for r in caplog.records if r.name == report.__name__]
    message = record.getMessage()
    assert message.startswith("trial 1: could not tag its MLflow run in http://user:***@127.0.0.1:")
    assert "\n" not in message  # the error's first line only
    # MLflow's error quotes the URL it called, credentials and all: masked too.
    assert "API request to http://user:***@127.0.0.1:" in message
    assert "s3cret-pw" not in caplog.text


def test_the_run_of_a_stale_trial_ends_killed_saying_why(store) -> None:
    run_id = _trial_run(store, "stale", 0)
    tracking_client(store).update_run(run_id, status="RUNNING")  # its worker died mid-run
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr(RUN_ID_ATTR, run_id)
    trial.set_user_attr(WORKER_ATTR, "gone-host:7")
    report.close_stale_run(_config(store), study.trials[0], grace_period=120)
    run = tracking_client(store).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == (
        "worker gone-host:7 lost: no heartbeat for over 120 s; trial failed as stale"
    )
    # A run that ended already keeps its status.
    finished = _trial_run(store, "stale", 1)
    trial = study.ask()
    trial.set_user_attr(RUN_ID_ATTR, finished)
    report.close_stale_run(_config(store), study.trials[1], grace_period=120)
    assert tracking_client(store).get_run(finished).info.status == "FINISHED"
