"""Direct links into the MLflow UI, and `make ui`'s first line (`python -m hpo.tracking.ui`).

MLflow 3.17's UI has a GenAI / Model training switch (top left) that decides what an
experiment opens on; it starts on GenAI, whose overview shows traces and no runs, and
remembers the choice per browser. The experiment's `mlflow.experimentKind` tag does not
override it (`hpo.tracking.runs.EXPERIMENT_KIND_TAG`), but the route's `workflowType`
query does, so every link made here opens the runs table in the Model training view.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from hydra import compose, initialize_config_dir
from mlflow.exceptions import MlflowException

from hpo.paths import PROJECT_ROOT, sqlite_database
from hpo.schema import register_configs
from hpo.tracking.runs import TrackedRun, tracking_client
from hpo.tracking.settings import TrackingSettings
from hpo.urls import SecretUrl

# Where `make ui` serves the UI (Makefile, target `ui`).
LOCAL_UI = "http://127.0.0.1:5000"
# The project's own store, the one `make ui` serves (conf/tracking/mlflow.yaml's default).
PROJECT_STORE = PROJECT_ROOT / "mlflow.db"
# The UI's query that selects its Model training view (its value for GenAI is `genai`).
_ML_VIEW = "workflowType=machine_learning"


def runs_url(ui_base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The experiment's runs table in the MLflow UI at `ui_base`, or run `run_id`'s page.

    `http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning`: the UI
    routes after `#`, and the query opens its Model training view (not GenAI).
    """
    if not experiment_id:
        raise ValueError("experiment_id is empty: give the id of an MLflow experiment")
    route = f"/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{ui_base.rstrip('/')}/#{route}?{_ML_VIEW}"


def ui_base(tracking_uri: SecretUrl | str, local_ui: str = LOCAL_UI) -> str:
    """Where the UI of `tracking_uri` is: the server itself (without any user or password)
    for an http(s) tracking server, else `local_ui` (`make ui`)."""
    parts = urlsplit(str(SecretUrl(tracking_uri)))
    if parts.scheme not in ("http", "https"):
        return local_ui
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def how_to_open(tracking_uri: SecretUrl | str) -> str:
    """What to run before a link from `ui_base(tracking_uri)` works, ending in "then open"."""
    tracking_uri = SecretUrl(tracking_uri)
    if tracking_uri.scheme in ("http", "https"):
        return "open"
    database = sqlite_database(tracking_uri)
    if database is not None and database.resolve() == PROJECT_STORE.resolve():
        return "`make ui`, then open"
    store = str(tracking_uri) if database is not None else "<tracking URI>"
    host, port = urlsplit(LOCAL_UI).hostname, urlsplit(LOCAL_UI).port
    return f"`mlflow ui --backend-store-uri {store} --host {host} --port {port}`, then open"


def study_runs_link(run: TrackedRun) -> str:
    """One line for a sweep's summary: how to open the runs table that holds `run`."""
    uri = SecretUrl(run.client.tracking_uri)
    experiment = run.client.get_run(run.run_id).info.experiment_id
    return f"{how_to_open(uri)} {runs_url(ui_base(uri), experiment)}"


def find_experiment_id(settings: TrackingSettings) -> str | None:
    """The id of `settings.experiment` in its store; None when it does not exist yet.

    A SQLite file that does not exist yet is not created.
    """
    database = sqlite_database(settings.uri)
    if database is not None and not database.exists():
        return None
    found = tracking_client(settings.uri).get_experiment_by_name(settings.experiment)
    return None if found is None else str(found.experiment_id)


def describe(settings: TrackingSettings, local_ui: str = LOCAL_UI) -> str:
    """What `make ui` prints first: the experiment's runs-table link, or how to make one."""
    name = settings.experiment
    try:
        experiment = find_experiment_id(settings)
    except MlflowException as exc:
        return f"Cannot read experiment {name!r} from the tracking store: {exc}"
    if experiment is None:
        return (
            f"No experiment {name!r} in the tracking store yet: `make sweep` (or `make "
            "train`) creates it and records its runs; then reload the UI."
        )
    url = runs_url(ui_base(settings.uri, local_ui), experiment)
    return f"Experiment {name!r}, runs table (each study a parent run, its trials nested):\n  {url}"


def _settings(overrides: Sequence[str]) -> TrackingSettings:
    """The `tracking` settings that conf/ composes to (with Hydra `overrides`)."""
    register_configs()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return TrackingSettings.from_config(cfg.tracking)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the direct link to the configured experiment's runs in the MLflow UI."""
    parser = argparse.ArgumentParser(
        prog="python -m hpo.tracking.ui",
        description="Print the MLflow UI link of the experiment's runs table.",
    )
    parser.add_argument("--ui", default=LOCAL_UI, help=f"the UI's address (default {LOCAL_UI})")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. tracking.uri=sqlite:////abs/mlflow.db"
    )
    args = parser.parse_args(argv)
    print(describe(_settings(args.overrides), args.ui))
    return 0


if __name__ == "__main__":
    sys.exit(main())
