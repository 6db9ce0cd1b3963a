"""Workers on the real services: PostgreSQL for the study, an MLflow server (with login).

The services come from `hpo.services.start`, exactly what `make services` runs; CI installs
PostgreSQL. Without it these tests fail (they do not skip).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState
from ports import free_port
from test_workers import (
    Workers,
    assert_retried_after_kill,
    assert_study_complete,
    kill_mid_trial,
)

from hpo.services import ServiceInfo, start, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def services() -> Iterator[ServiceInfo]:
    # Under /tmp, not pytest's 0700 folder: as root, PostgreSQL runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="svc-workers-", dir="/tmp"))
    try:
        yield start(folder, "127.0.0.1", free_port(), free_port(), auth=True)
    finally:
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _workers(tmp_path: Path, services: ServiceInfo, study: str) -> Workers:
    return Workers(tmp_path, services.storage_url, services.tracking_url, services.env, study=study)


def _secrets(services: ServiceInfo) -> list[str]:
    pgpass = Path(services.env["PGPASSFILE"]).read_text().strip().rsplit(":", 1)[1]
    return [pgpass, services.env["MLFLOW_TRACKING_PASSWORD"]]


def test_two_workers_on_postgresql_and_an_mlflow_server(
    tmp_path: Path, services: ServiceInfo
) -> None:
    workers = _workers(tmp_path, services, "pg-two-workers")
    first, second = workers.start(6), workers.start(6)
    workers.wait([first, second])
    assert_study_complete(workers, n_trials=6, n_workers=2)
    assert len({t.user_attrs["worker"] for t in workers.study().trials}) == 2
    # No password in what the workers printed or wrote (logs, Hydra's saved configs,
    # optimization_results.yaml), nor in any MLflow param or tag.
    written = [workers.output()] + [
        p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
    ]
    _, runs = workers.runs()
    recorded = [str(r.data.params) + str(r.data.tags) for r in runs]
    for secret in _secrets(services):
        assert not any(secret in text for text in written + recorded)
    assert "Traceback" not in workers.output()


def test_killed_worker_trial_is_retried_by_the_other_worker(
    tmp_path: Path, services: ServiceInfo
) -> None:
    workers = _workers(tmp_path, services, "pg-kill")
    doomed = workers.start(4, "trainer.epochs=6")
    survivor = workers.start(4)
    lost = kill_mid_trial(workers, doomed)
    workers.wait([survivor])
    assert_retried_after_kill(workers, lost)
    assert_study_complete(workers, n_trials=4, n_workers=2)
    survivor_log = workers.logs[1].read_text()
    assert f"trial {lost.number} (run by {lost.user_attrs['worker']}) sent no heartbeat" in (
        survivor_log
    )


def _with_password(url: str, password: str) -> str:
    return url.replace("fmnist@", f"fmnist:{password}@", 1)


def test_wrong_database_password_is_a_clear_error_with_the_password_masked(
    tmp_path: Path, services: ServiceInfo
) -> None:
    env = {k: v for k, v in services.env.items() if k != "PGPASSFILE"}
    storage = _with_password(services.storage_url, "not-the-password")
    workers = Workers(tmp_path, storage, services.tracking_url, env, study="pg-wrong")
    worker = workers.start(1)
    assert worker.wait(timeout=120) == 1
    output = workers.output()
    assert "cannot open the Optuna storage postgresql+psycopg://fmnist:***@127.0.0.1:" in output
    assert 'password authentication failed for user "fmnist"' in output
    assert "not-the-password" not in output and "Traceback" not in output


def test_password_in_the_url_reaches_trials_in_other_processes_masked(
    tmp_path: Path, services: ServiceInfo
) -> None:
    # No PGPASSFILE: the password is in the URL. Trials run in joblib worker processes,
    # which reach the study with the URL the sweeper passed without its password.
    password = _secrets(services)[0]
    env = {k: v for k, v in services.env.items() if k != "PGPASSFILE"}
    storage = _with_password(services.storage_url, password)
    workers = Workers(tmp_path, storage, services.tracking_url, env, study="pg-url-password")
    workers.wait([workers.start(2, "hydra/launcher=joblib", "hydra.launcher.n_jobs=1")])
    with workers.credentials():
        os.environ["PGPASSFILE"] = services.env["PGPASSFILE"]
        finished = workers.study().get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 2 and all(t.intermediate_values for t in finished)
    written = [workers.output()] + [
        p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
    ]
    _, runs = workers.runs()
    recorded = [str(r.data.params) + str(r.data.tags) for r in runs]
    assert not any(password in text for text in written + recorded)
    assert "fmnist:***@" in workers.output()
