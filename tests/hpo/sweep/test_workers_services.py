"""Workers on the real services: PostgreSQL for the study, an MLflow server (with login).

The services come from `hpo.services.start`, exactly what `make services` runs; CI installs
PostgreSQL. Without it these tests fail (they do not skip).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from optuna.trial import TrialState
from test_workers import (
    assert_retried_after_kill,
    assert_study_complete,
    kill_mid_trial,
    study_runs,
    tiny_workers,
    trials,
    wait_ok,
)

from bench.study_workers import Stores, StudyWorkers, client_env, local_services
from hpo.services import ServiceInfo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def services() -> Iterator[ServiceInfo]:
    with local_services("svc-workers-", auth=True) as info:
        yield info


MakeWorkers = Callable[[Stores, str], StudyWorkers]


@pytest.fixture
def make_workers(tmp_path: Path) -> Iterator[MakeWorkers]:
    """Tiny-run workers on (stores, study name), ended with the test, also when it fails."""
    with ExitStack() as stack:
        yield lambda stores, study: stack.enter_context(tiny_workers(tmp_path, stores, study))


def _secrets(services: ServiceInfo) -> list[str]:
    pgpass = Path(services.env["PGPASSFILE"]).read_text().strip().rsplit(":", 1)[1]
    return [pgpass, services.env["MLFLOW_TRACKING_PASSWORD"]]


def test_two_workers_on_postgresql_and_an_mlflow_server(
    tmp_path: Path, services: ServiceInfo, make_workers: MakeWorkers
) -> None:
    workers = make_workers(Stores.of_services(services), "pg-two-workers")
    first, second = workers.start(6), workers.start(6)
    wait_ok(workers, [first, second])
    assert_study_complete(workers, n_trials=6, n_workers=2)
    assert len({t.user_attrs["worker"] for t in trials(workers)}) == 2
    # No password in what the workers printed or wrote (logs, Hydra's saved configs,
    # optimization_results.yaml), nor in any MLflow param or tag.
    written = [workers.output()] + [
        p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
    ]
    recorded = [str(r.data.params) + str(r.data.tags) for r in study_runs(workers)]
    for secret in _secrets(services):
        assert not any(secret in text for text in written + recorded)
    assert "Traceback" not in workers.output()


def test_killed_worker_trial_is_retried_by_the_other_worker(
    services: ServiceInfo, make_workers: MakeWorkers
) -> None:
    workers = make_workers(Stores.of_services(services), "pg-kill")
    doomed = workers.start(4, "trainer.epochs=6")
    survivor = workers.start(4)
    lost = kill_mid_trial(workers, doomed)
    wait_ok(workers, [survivor])
    assert_retried_after_kill(workers, lost)
    assert_study_complete(workers, n_trials=4, n_workers=2)
    survivor_log = workers.logs[1].read_text()
    assert f"trial {lost.number} (run by {lost.user_attrs['worker']}) sent no heartbeat" in (
        survivor_log
    )


def _with_password(url: str, password: str) -> str:
    return url.replace("fmnist@", f"fmnist:{password}@", 1)


def _without_pgpass(services: ServiceInfo, password: str) -> Stores:
    """The services' stores with `password` in the storage URL and no PGPASSFILE."""
    env = {k: v for k, v in services.env.items() if k != "PGPASSFILE"}
    storage = _with_password(services.storage_url, password)
    return Stores(storage, services.tracking_url, env)


def test_wrong_database_password_is_a_clear_error_with_the_password_masked(
    services: ServiceInfo, make_workers: MakeWorkers
) -> None:
    stores = _without_pgpass(services, "not-the-password")
    workers = make_workers(stores, "pg-wrong")
    worker = workers.start(1)
    assert worker.wait(timeout=120) == 1
    output = workers.output()
    assert "cannot open the Optuna storage postgresql+psycopg://fmnist:***@127.0.0.1:" in output
    assert 'password authentication failed for user "fmnist"' in output
    assert "not-the-password" not in output and "Traceback" not in output


def test_password_in_the_url_reaches_trials_in_other_processes_masked(
    tmp_path: Path, services: ServiceInfo, make_workers: MakeWorkers
) -> None:
    # No PGPASSFILE: the password is in the URL. Trials run in joblib worker processes,
    # which reach the study with the URL the sweeper passed without its password.
    password = _secrets(services)[0]
    workers = make_workers(_without_pgpass(services, password), "pg-url-password")
    wait_ok(workers, [workers.start(2, "hydra/launcher=joblib", "hydra.launcher.n_jobs=1")])
    with client_env({"PGPASSFILE": services.env["PGPASSFILE"]}):
        finished = trials(workers, TrialState.COMPLETE, TrialState.PRUNED)
    assert len(finished) == 2 and all(t.intermediate_values for t in finished)
    written = [workers.output()] + [
        p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
    ]
    recorded = [str(r.data.params) + str(r.data.tags) for r in study_runs(workers)]
    assert not any(password in text for text in written + recorded)
    assert "fmnist:***@" in workers.output()
