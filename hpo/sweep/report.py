"""What a sweep leaves behind: optimization_results.yaml, the parent MLflow run, a summary."""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.pyplot as plt
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots
from rich.console import Console
from rich.table import Table

from hpo.errors import first_line
from hpo.sweep.fidelity import BUDGET_ATTR, RUNG_ATTR
from hpo.sweep.liveness import RUN_ID_ATTR, WORKER_ATTR, running_trials
from hpo.sweep.progress import SweepProgress
from hpo.sweep.trial_link import LINK_KEY
from hpo.tracking.settings import TrackingSettings
from hpo.urls import SecretUrl, mask_urls

if TYPE_CHECKING:
    from hpo.tracking.runs import TrackedRun

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
TRIALS_ARTIFACT = "trials.csv"
# The study's user attr naming its MLflow parent run: set once, by the worker that created
# the study, so workers that join never create a second one.
PARENT_RUN_ATTR = "mlflow_parent_run_id"
# How long a joining worker waits for the creating worker to name the parent run.
PARENT_RUN_WAIT_S = 120.0


def _runs() -> ModuleType:
    """`hpo.tracking.runs`, imported on first use. Importing MLflow takes over a second and
    a few hundred MB in every sweep process, and a sweep of an app that records nothing
    (one without a `tracking` node, or with tracking off) never needs it."""
    from hpo.tracking import runs

    return runs


def tracking_settings(config: DictConfig | None) -> TrackingSettings | None:
    """The app's MLflow settings when it takes part in sweeps (has the link and `tracking`)."""
    if config is None or LINK_KEY not in config or "tracking" not in config:
        return None
    settings = TrackingSettings.from_config(config.tracking)
    return settings if settings.enabled else None


def open_parent_run(
    config: DictConfig, study: optuna.Study, storage: SecretUrl | None, created: bool
) -> TrackedRun | None:
    """Open the study's MLflow parent run: the worker that `created` the study opens it
    (reopens it, for a study continued from an older store) and names it on the study; a
    worker that joins waits for that name."""
    settings = tracking_settings(config)
    if settings is None:
        return None
    directions = ",".join(d.name.lower() for d in study.directions)
    tags = {"optuna_storage": storage or "memory", "directions": directions}
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id is None and not created and not study.trials:
        run_id = _wait_for_parent_run(study)
    run = _runs().open_study_run(settings, study.study_name, tags, run_id=run_id)
    if run_id is None:
        study.set_user_attr(PARENT_RUN_ATTR, run.run_id)
    return run


def _wait_for_parent_run(study: optuna.Study) -> str | None:
    """The parent run id once the creating worker has set it; None after the wait (that
    worker died: this one opens the run instead)."""
    log.info("Waiting for the worker that created study %r to open its run", study.study_name)
    deadline = time.monotonic() + PARENT_RUN_WAIT_S
    while time.monotonic() < deadline:
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id is not None:
            return str(run_id)
        time.sleep(0.5)
    log.warning("no MLflow parent run named after %.0f s: opening it here", PARENT_RUN_WAIT_S)
    return None


def tag_child_run(config: DictConfig | None, study_name: str, number: int, state: str) -> None:
    """Record the trial's final Optuna state on its MLflow child run.

    A tracking server lost mid-search costs the tag, not the search: the trial's state is
    in the study, and the job's own run reported the error.
    """
    settings = tracking_settings(config)
    if settings is None:
        return
    try:
        run = _runs().find_trial_run(settings, study_name, number)
        if run is not None:
            run.set_tags({"trial_state": state})
    except Exception as exc:
        log.warning(
            "trial %d: could not tag its MLflow run in %s: %s",
            number,
            settings.uri,
            settings.uri.redact(first_line(exc)),
        )


def tag_retried_run(config: DictConfig | None, run_id: str | None, number: int) -> None:
    """Point the KILLED run of a lost trial at the trial that runs its params again."""
    settings = tracking_settings(config)
    if settings is None or not run_id:
        return
    try:
        run = _runs().TrackedRun(_runs().tracking_client(settings.uri), run_id)
        run.set_tags({"retried_as_trial": number})
    except Exception as exc:
        why = settings.uri.redact(first_line(exc))
        log.warning("could not tag MLflow run %s as retried: %s", run_id, why)


def close_stale_run(config: DictConfig | None, trial: FrozenTrial, grace_period: int) -> None:
    """End the MLflow run of a trial whose worker died: KILLED, saying why."""
    settings = tracking_settings(config)
    run_id = trial.user_attrs.get(RUN_ID_ATTR)
    if settings is None or not run_id:
        return
    owner = trial.user_attrs.get(WORKER_ATTR, "an unknown worker")
    why = f"worker {owner} lost: no heartbeat for over {grace_period} s; trial failed as stale"
    try:
        _runs().end_lost_run(settings, str(run_id), why)
        log.info("MLflow run %s of trial %d ended KILLED", run_id, trial.number)
    except Exception as exc:
        why = settings.uri.redact(first_line(exc))
        log.warning("could not end MLflow run %s of trial %d: %s", run_id, trial.number, why)


def optimization_results(study: optuna.Study) -> dict[str, Any]:
    """The upstream plugin's file: best params and value, or the Pareto front."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(study.directions) > 1:
        front = study.best_trials if complete else []
        return {
            "name": "optuna",
            "solutions": [
                {"number": t.number, "params": t.params, "values": t.values} for t in front
            ],
        }
    rungs = fidelity_rungs(study)
    extra = {"rungs": rungs} if rungs else {}
    if not complete:
        return {"name": "optuna", "best_params": {}, "best_value": None, **extra}
    # With multi-fidelity only top-budget runs are COMPLETE, so the best is one of them.
    best = study.best_trial
    return {
        "name": "optuna",
        "best_trial": best.number,
        "best_params": best.params,
        "best_value": best.value,
        **extra,
    }


def fidelity_rungs(study: optuna.Study) -> list[dict[str, Any]]:
    """Per rung of a multi-fidelity study: budget, runs finished and failed, the best run;
    empty for a study without rungs. Read from the trials' attributes, so it needs no
    settings and sees every worker's runs."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    rungs: dict[int, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        if RUNG_ATTR not in trial.user_attrs or trial.state == TrialState.WAITING:
            continue
        rung = int(trial.user_attrs[RUNG_ATTR])
        row = rungs.setdefault(
            rung,
            {
                "rung": rung,
                "budget": trial.user_attrs.get(BUDGET_ATTR),
                "finished": 0,
                "failed": 0,
                "running": 0,
                "best_trial": None,
                "best_value": None,
            },
        )
        if trial.state == TrialState.FAIL:
            row["failed"] += 1
        elif trial.state == TrialState.RUNNING:
            row["running"] += 1
        elif trial.value is not None:
            row["finished"] += 1
            best = row["best_value"]
            if best is None or (trial.value > best if maximize else trial.value < best):
                row["best_trial"], row["best_value"] = trial.number, trial.value
    return [rungs[r] for r in sorted(rungs)]


def finish(
    study: optuna.Study,
    progress: SweepProgress,
    parent: TrackedRun | None,
    sweep_dir: Path,
    status: str = "FINISHED",
) -> None:
    """Write the results file, fill the parent run (ending it with MLflow `status`), print
    the summary."""
    results = optimization_results(study)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    results_path = sweep_dir / RESULTS_FILE
    results_path.write_text(OmegaConf.to_yaml(OmegaConf.create(results)))
    log.info("Wrote %s", results_path)
    if parent is not None:
        try:
            _fill_parent(parent, study, results, results_path)
            others = len(running_trials(study))
            if others and status == "FINISHED":
                # Other workers still run trials: the last one to finish ends the parent run.
                log.info("%d trial(s) of other workers running: the parent run stays open", others)
            else:
                _runs().end_run(parent, status)
        except Exception as exc:
            # The study and the results file hold everything; the next run (or worker)
            # to finish fills the parent run again.
            log.error(
                "could not record the study on its MLflow parent run %s: %s; the results are "
                "in %s and the study storage",
                parent.run_id,
                mask_urls(first_line(exc)),
                results_path,
            )
    Console().print(_summary(study, progress, results, parent))
    if parent is not None:
        try:
            from hpo.tracking.ui import study_runs_link  # MLflow, loaded with `parent`

            link = study_runs_link(parent)
        except Exception as exc:  # the tracking server is gone: the summary still prints
            log.warning("no MLflow UI link: %s", mask_urls(first_line(exc)))
            return
        # A line of its own, not a table cell: a cell would break the link in two.
        Console().print(f"MLflow UI: {link}", soft_wrap=True)


def _fill_parent(
    parent: TrackedRun, study: optuna.Study, results: dict[str, Any], results_path: Path
) -> None:
    counts = _state_counts(study)
    parent.log_metrics(
        {f"trials/{state.lower()}": n for state, n in counts.items()}, step=len(study.trials)
    )
    if results.get("best_value") is not None:
        parent.log_metrics({"best_value": results["best_value"]}, step=len(study.trials))
        parent.set_tags(
            {"best_trial": results["best_trial"], "best_params": json.dumps(results["best_params"])}
        )
    parent.log_file(results_path)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / TRIALS_ARTIFACT
        study.trials_dataframe().to_csv(table, index=False)
        parent.log_file(table)
    with study_figures(study) as figures:
        for name, figure in figures:
            parent.log_figure(figure, f"plots/{name}.png")


@contextmanager
def study_figures(study: optuna.Study) -> Iterator[list[tuple[str, Any]]]:
    """Optuna's matplotlib plots that can be drawn now, for the block to save; each skipped
    one is logged with why.

    Optuna draws through pyplot, which keeps every figure until it is closed, and styles it
    by changing the process-wide rcParams (`plt.style.use("ggplot")`). So the plots are
    drawn with interactive mode off (no window opens, even where pyplot has a GUI backend;
    a headless machine gets Agg by itself), inside an `rc_context` (the style is undone
    after the block), and every figure opened meanwhile is closed when the block ends, a
    plot that failed half-way included.
    """
    with matplotlib.rc_context(), plt.ioff():
        before = set(plt.get_fignums())
        try:
            yield _draw(study)
        finally:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)


def _draw(study: optuna.Study) -> list[tuple[str, Any]]:
    multi = len(study.directions) > 1
    target: Callable[[Any], float] | None = (lambda t: t.values[0]) if multi else None
    kwargs: dict[str, Any] = {"target": target, "target_name": "objective 0"} if multi else {}
    makers: dict[str, Callable[[], Any]] = {
        "optimization_history": lambda: optuna_plots.plot_optimization_history(study, **kwargs),
        "param_importances": lambda: optuna_plots.plot_param_importances(study, **kwargs),
        "parallel_coordinate": lambda: optuna_plots.plot_parallel_coordinate(study, **kwargs),
        "intermediate_values": lambda: optuna_plots.plot_intermediate_values(study),
    }
    if multi:
        makers["pareto_front"] = lambda: optuna_plots.plot_pareto_front(study)
    figures = []
    for name, make in makers.items():
        reason = _cannot_draw(study, name)
        if reason is None:
            try:
                with warnings.catch_warnings():
                    # Experimental-API and flat-axis notices, not problems of this study.
                    warnings.simplefilter("ignore")
                    axes = make()
                figures.append((name, _figure_of(axes)))
                continue
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
        log.info("Skipped the %s plot: %s", name, reason)
    return figures


def _cannot_draw(study: optuna.Study, name: str) -> str | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return "no completed trial yet"
    if name == "param_importances" and (len(complete) < 2 or not complete[0].params):
        return "needs at least 2 completed trials with sampled params"
    if name == "intermediate_values" and not any(t.intermediate_values for t in study.trials):
        return "no trial reported per-epoch values"
    return None


def _figure_of(axes: Any) -> Any:
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    figure = first.get_figure()
    figure.set_size_inches(9, 5.5)
    figure.tight_layout()
    return figure


def _state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name: 0 for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name in counts:
            counts[trial.state.name] += 1
    return counts


def _summary(
    study: optuna.Study, progress: SweepProgress, results: dict[str, Any], parent: TrackedRun | None
) -> Table:
    table = Table(title=f"Study {study.study_name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    this = ", ".join(
        f"{progress.count(s)} {s.name.lower()}"
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    )
    total = ", ".join(f"{n} {s.lower()}" for s, n in _state_counts(study).items())
    table.add_row("this run", f"{this} in {progress.seconds():.0f} s")
    table.add_row("whole study", total)
    if "solutions" in results:
        for solution in results["solutions"]:
            table.add_row(
                f"pareto #{solution['number']}", f"{solution['values']} {solution['params']}"
            )
    elif results.get("best_value") is not None:
        table.add_row("best value", f"{results['best_value']:.5g} (trial {results['best_trial']})")
        table.add_row("best params", json.dumps(results["best_params"]))
    for row in results.get("rungs", []):
        best = (
            f", best {row['best_value']:.5g} (trial {row['best_trial']})"
            if row["best_value"] is not None
            else ""
        )
        table.add_row(
            f"rung {row['rung']} (budget {row['budget']})",
            f"{row['finished']} run(s) finished, {row['failed']} failed, "
            f"{row['running']} running{best}",
        )
    if results.get("rungs"):
        table.add_row("", "runs below the top rung are stored PRUNED; the best is a top run")
    if parent is not None:
        table.add_row("MLflow", f"parent run {parent.run_id}, trials nested in it (link below)")
        table.add_row(
            "next",
            f"`make best-eval STUDY={study.study_name}` retests the best trial on the test set",
        )
    return table
