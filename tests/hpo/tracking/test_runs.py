"""MLflow runs: how they end, nesting, and reading back what a run recorded."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from ports import free_port

from hpo.tracking.runs import (
    ArtifactUnavailableError,
    TrackingUnavailableError,
    check_store,
    end_run,
    find_trial_run,
    open_run,
    open_study_run,
    tracking_client,
)
from hpo.tracking.settings import TrackingSettings


@pytest.fixture
def settings(tmp_path: Path) -> TrackingSettings:
    return TrackingSettings(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="runs-test")


def _status(settings: TrackingSettings, run_id: str) -> str:
    return tracking_client(settings.uri).get_run(run_id).info.status


class _PrunedError(Exception):
    pass


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (None, "FINISHED"),
        (_PrunedError, "FINISHED"),
        (RuntimeError, "FAILED"),
        (KeyboardInterrupt, "KILLED"),
    ],
)
def test_open_run_ends_with_the_status_of_the_block(settings, raised, status) -> None:
    run_ids = []
    try:
        with open_run(settings, run_name="r", graceful=(_PrunedError,)) as run:
            assert run is not None
            run_ids.append(run.run_id)
            if raised is not None:
                raise raised("boom")
    except (_PrunedError, RuntimeError, KeyboardInterrupt):
        pass
    assert _status(settings, run_ids[0]) == status
    tags = tracking_client(settings.uri).get_run(run_ids[0]).data.tags
    assert ("error" in tags) == (status == "FAILED")


def test_disabled_tracking_opens_no_run(tmp_path: Path) -> None:
    settings = TrackingSettings(enabled=False, uri=f"sqlite:///{tmp_path}/mlflow.db")
    with open_run(settings) as run:
        assert run is None
    assert not (tmp_path / "mlflow.db").exists()


def test_a_trial_run_reads_back_its_parent_history_and_artifacts(settings, tmp_path) -> None:
    parent = open_study_run(settings, "study-a", {"directions": "maximize"})
    tags = {"study_name": "study-a", "trial_number": "3"}
    with open_run(settings, parent_run_id=parent.run_id, tags=tags) as run:
        assert run is not None
        for epoch, acc in enumerate([0.5, 0.7, 0.6], start=1):
            run.log_metrics({"val/acc": acc, "val/loss": 1 - acc}, step=epoch)
        run.log_text("hello", "notes/a.txt")
    end_run(parent)

    found = find_trial_run(settings, "study-a", 3)
    assert found is not None and found.run_id == run.run_id
    assert find_trial_run(settings, "study-a", 4) is None
    assert found.parent_run_id() == parent.run_id
    history = found.history(["val/acc", "val/loss"])
    assert [h["val/acc"] for h in history] == [0.5, 0.7, 0.6]
    assert history[1] == {"val/acc": 0.7, "val/loss": pytest.approx(0.3)}
    assert found.download("notes/a.txt", str(tmp_path)).read_text() == "hello"
    with pytest.raises(
        ArtifactUnavailableError, match=rf"run {run.run_id} has no artifact x/missing\.pt"
    ):
        found.download("x/missing.pt", str(tmp_path))


def test_the_study_run_is_reopened_not_duplicated(settings) -> None:
    first = open_study_run(settings, "study-b", {})
    end_run(first, "KILLED")
    again = open_study_run(settings, "study-b", {})
    assert again.run_id == first.run_id
    assert _status(settings, again.run_id) == "RUNNING"


def test_more_params_tags_and_metrics_than_one_batch_holds_are_all_logged(settings) -> None:
    # The store takes at most 100 params or tags and 1000 metrics per request; MlflowClient's
    # log_batch splits larger lists itself, so TrackedRun hands it everything at once.
    with open_run(settings, run_name="wide") as run:
        assert run is not None
        run.log_params({f"p{i}": i for i in range(250)})
        run.set_tags({f"t{i}": i for i in range(150)})
        run.log_metrics({f"m{i}": float(i) for i in range(1200)}, step=2)
    data = tracking_client(settings.uri).get_run(run.run_id).data
    assert data.params == {f"p{i}": str(i) for i in range(250)}
    assert {k: v for k, v in data.tags.items() if k.startswith("t")} == {
        f"t{i}": str(i) for i in range(150)
    }
    assert data.metrics == {f"m{i}": float(i) for i in range(1200)}


def test_a_failed_runs_error_tag_holds_no_password(settings) -> None:
    # MLflow's own errors quote the server's URL, credentials included.
    with pytest.raises(RuntimeError), open_run(settings, run_name="leaky") as run:
        assert run is not None
        raise RuntimeError("API request to http://user:s3cret@10.0.0.2:5000/api/2.0 failed")
    tags = tracking_client(settings.uri).get_run(run.run_id).data.tags
    assert tags["error"] == (
        "RuntimeError: API request to http://user:***@10.0.0.2:5000/api/2.0 failed"
    )


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


def test_a_tracking_server_url_with_a_login_passes_the_health_check() -> None:
    # urllib takes no user in a URL (it would look the host up as `user:secret@host`):
    # the check asks the server's /health, which needs no login, without it.
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        check_store(TrackingSettings(uri=f"http://user:s3cret@127.0.0.1:{port}/"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_unreachable_tracking_server_is_named_with_the_password_masked() -> None:
    settings = TrackingSettings(uri=f"http://user:s3cret@127.0.0.1:{free_port()}")
    with pytest.raises(TrackingUnavailableError) as caught:
        check_store(settings)
    assert "cannot reach the MLflow tracking server at http://user:***@127.0.0.1:" in str(
        caught.value
    )
    assert "s3cret" not in str(caught.value)
