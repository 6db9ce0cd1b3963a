"""Everything that talks to MLflow: one run per training, nested under a study's run.

This is the only module of the training path that imports MLflow. It uses `MlflowClient`
with explicit run ids rather than the fluent API's global "active run", so several runs
(a study's parent run and a trial's child run) can be open in one process without
stepping on each other.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from hpo.errors import RunError, first_line
from hpo.paths import sqlite_database
from hpo.tracking.settings import TrackingSettings
from hpo.urls import SecretUrl

log = logging.getLogger(__name__)

# MLflow draws a progress bar for every artifact download; in logs they are noise.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class TrackingUnavailableError(RunError):
    """The tracking store cannot be reached or written."""


class ArtifactUnavailableError(LookupError):
    """A run's artifact is missing or cannot be downloaded."""


def tracking_client(uri: SecretUrl | str) -> MlflowClient:
    """A client of the tracking store at `uri`: the project's one way to make one, and the
    one place the tracking URI's password is revealed (to MLflow, which connects)."""
    return MlflowClient(tracking_uri=SecretUrl(uri).reveal())


class TrackedRun:
    """An open MLflow run; every method logs into it by id."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    # `log_batch` splits what it is given into the store's batch limits itself.
    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        self.client.log_batch(self.run_id, params=items)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = _now_ms()
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def download(self, artifact: str, folder: str) -> Path:
        """Download `artifact` of this run into `folder`; its local path.

        Raises:
            ArtifactUnavailableError: naming the run, the artifact and MLflow's reason.
        """
        try:
            return Path(self.client.download_artifacts(self.run_id, artifact, folder))
        except (MlflowException, OSError) as exc:
            raise ArtifactUnavailableError(
                f"run {self.run_id} has no artifact {artifact}: {exc}"
            ) from exc

    def history(self, names: Sequence[str]) -> list[dict[str, float]]:
        """The metrics `names` per step, oldest step first (one dict per logged step)."""
        steps: dict[int, dict[str, float]] = {}
        for name in names:
            for metric in self.client.get_metric_history(self.run_id, name):
                steps.setdefault(metric.step, {})[name] = metric.value
        return [steps[step] for step in sorted(steps)]

    def parent_run_id(self) -> str | None:
        """The run this one is nested under (a trial's study run), if any."""
        return self.client.get_run(self.run_id).data.tags.get(MLFLOW_PARENT_RUN_ID)

    def log_bytes(self, write: Any, artifact_file: str) -> None:
        """Log a file produced by `write(path)` under `artifact_file`."""
        folder, name = os.path.split(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            write(path)
            self.log_file(path, folder or None)


def check_store(settings: TrackingSettings) -> None:
    """Fail fast, before any training, when the tracking store is unusable.

    Raises:
        TrackingUnavailableError: naming the URI, the reason and how to fix it.
    """
    uri = settings.uri
    fix = "fix tracking.uri (or MLFLOW_TRACKING_URI), or run with tracking.enabled=false"
    if uri.scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(_health_url(uri), timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TrackingUnavailableError(
                f"cannot reach the MLflow tracking server at {uri}: {uri.redact(str(exc))}. "
                f"Start the server (`make services`, or `make ui` for the local store), or {fix}"
            ) from exc
    elif (database := sqlite_database(uri)) is not None:
        folder = database.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingUnavailableError(
                f"cannot write the MLflow SQLite store {uri}: folder {folder} is missing "
                f"or not writable; {fix}"
            )


# MLflow's experiment tag for what an experiment holds: `custom_model_development` is the
# UI's "Machine learning" kind (runs), `genai_development` its GenAI kind (traces). MLflow
# 3.17's UI goes by its own GenAI / Model training switch instead (see `hpo.tracking.ui`);
# the tag still says what the experiment is to MLflow clients and UIs that read it.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"


def experiment_id(client: MlflowClient, settings: TrackingSettings) -> str:
    """The id of `settings.experiment`, created (with its artifact folder) when missing.

    The experiment is tagged as model training (`EXPERIMENT_KIND_TAG`) when created, and
    when it exists without that tag; a kind set by someone else is left alone.
    """
    found = client.get_experiment_by_name(settings.experiment)
    if found is not None:
        if EXPERIMENT_KIND_TAG not in found.tags:
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        return str(found.experiment_id)
    try:
        return client.create_experiment(
            settings.experiment,
            artifact_location=_artifact_location(settings),
            tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND},
        )
    except MlflowException:
        # Another worker of a parallel sweep created it first.
        found = client.get_experiment_by_name(settings.experiment)
        if found is None:
            raise
        return str(found.experiment_id)


@contextmanager
def open_run(
    settings: TrackingSettings,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    graceful: tuple[type[BaseException], ...] = (),
) -> Iterator[TrackedRun | None]:
    """Open a run for the block; None when tracking is disabled.

    The run ends FINISHED, FAILED (with the error text as the `error` tag) or KILLED
    (Ctrl-C), so a crashed training never stays RUNNING in the UI. Exceptions listed in
    `graceful` (a pruned trial) end it FINISHED and propagate.
    """
    if not settings.enabled:
        yield None
        return
    check_store(settings)
    client = tracking_client(settings.uri)
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = client.create_run(
        experiment_id(client, settings), tags=all_tags, run_name=run_name or settings.run_name
    )
    tracked = TrackedRun(client, run.info.run_id)
    try:
        yield tracked
    except graceful:
        client.set_terminated(tracked.run_id, RunStatus.to_string(RunStatus.FINISHED))
        raise
    except KeyboardInterrupt:
        client.set_terminated(tracked.run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as exc:
        try:
            # An MLflow error quotes the server's URL, credentials and all.
            error = settings.uri.redact(f"{type(exc).__name__}: {exc}")
            tracked.set_tags({"error": error[:5000]})
            client.set_terminated(tracked.run_id, RunStatus.to_string(RunStatus.FAILED))
        except Exception as lost:
            # The store itself is gone (a tracking server lost mid-training): the original
            # error is what the caller must see; this one only explains the open run.
            log.warning(
                "could not mark MLflow run %s FAILED in %s: %s",
                tracked.run_id,
                settings.uri,
                settings.uri.redact(first_line(lost)),
            )
        raise
    client.set_terminated(tracked.run_id, RunStatus.to_string(RunStatus.FINISHED))


def _health_url(uri: SecretUrl) -> str:
    """The server's `/health` page: it needs no login, and urllib takes no user in a URL."""
    parts = urlsplit(uri.without_password())
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/health", "", ""))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _artifact_location(settings: TrackingSettings) -> str | None:
    if settings.artifact_location:
        return settings.artifact_location
    database = sqlite_database(settings.uri)
    if database is not None:
        # Beside the database, not in whatever folder the job happens to run in.
        return str(database.resolve().parent / "mlartifacts")
    return None


def _param_value(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text[:6000]  # MLflow's limit for a param value


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- sweeps: one parent run per study, one child run per trial ----------------------------

STUDY_TAG = "study_name"
TRIAL_TAG = "trial_number"
ROLE_TAG = "sweep_role"


def open_study_run(
    settings: TrackingSettings,
    study_name: str,
    tags: Mapping[str, Any],
    run_id: str | None = None,
) -> TrackedRun:
    """The study's parent run: `run_id`, or the one found by its tags when a rerun continues
    the study, else a new one."""
    check_store(settings)
    client = tracking_client(settings.uri)
    if run_id is not None:
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        log.info("Joined MLflow parent run %s of study %r", run_id, study_name)
        return TrackedRun(client, run_id)
    exp_id = experiment_id(client, settings)
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.{ROLE_TAG} = 'study' and tags.{STUDY_TAG} = {_quoted(study_name)}",
        max_results=1,
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        log.info("Reopened MLflow parent run %s of study %r", run_id, study_name)
    else:
        all_tags = {
            **{k: str(v) for k, v in tags.items()},
            ROLE_TAG: "study",
            STUDY_TAG: study_name,
        }
        run_id = client.create_run(exp_id, tags=all_tags, run_name=study_name).info.run_id
        log.info("Created MLflow parent run %s for study %r", run_id, study_name)
    return TrackedRun(client, run_id)


def end_run(run: TrackedRun, status: str = "FINISHED") -> None:
    """Mark `run` ended with MLflow status `status` (FINISHED, FAILED, KILLED)."""
    run.client.set_terminated(run.run_id, status)


def end_lost_run(settings: TrackingSettings, run_id: str, why: str) -> None:
    """End the run of a trial whose process died (it cannot end the run itself): KILLED,
    with `why` as its `error` tag. A run that already ended keeps its status."""
    client = tracking_client(settings.uri)
    if client.get_run(run_id).info.status != RunStatus.to_string(RunStatus.RUNNING):
        return
    client.set_tag(run_id, "error", why)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


def find_trial_run(settings: TrackingSettings, study_name: str, number: int) -> TrackedRun | None:
    """The child run of trial `number` of `study_name`, if the job created one."""
    client = tracking_client(settings.uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None:
        return None
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.{STUDY_TAG} = {_quoted(study_name)} and tags.{TRIAL_TAG} = '{number}'",
        max_results=1,
    )
    return TrackedRun(client, found[0].info.run_id) if found else None


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
