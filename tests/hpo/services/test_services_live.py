"""The real services: PostgreSQL and `mlflow server` started, used, stopped (slow).

No mocks: these need PostgreSQL's server binaries (CI installs the `postgresql` package),
and fail, not skip, without them. Each state folder is a fresh `mkdtemp` under /tmp rather
than `tmp_path`: run as root, PostgreSQL runs as the `postgres` user, who cannot pass
pytest's private base folder (mode 0700), and a short path keeps the unix socket under
its 107-byte limit.
"""

from __future__ import annotations

import base64
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest
from ports import free_port

from hpo.services import ServiceError, ServiceInfo, start, status, stop
from hpo.services.credentials import read_pgpass_password

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]
PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _get(url: str, login: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if login is not None:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode()
        )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpo.services", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def state_dirs() -> Iterator[list[Path]]:
    """Fresh state folders, removed at the end (see the module docstring for why not tmp_path)."""
    made: list[Path] = []
    yield made
    for folder in made:
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _new_dir(made: list[Path]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="svc-", dir="/tmp"))
    made.append(folder)
    return folder


@pytest.fixture(scope="module")
def plain(state_dirs: list[Path]) -> Iterator[ServiceInfo]:
    """One set of services on loopback without a login, shared by the tests below."""
    info = start(_new_dir(state_dirs), "127.0.0.1", free_port(), free_port(), auth=False)
    yield info
    stop(info.dir)


def _ports(info: ServiceInfo) -> tuple[int, int]:
    pg = int(info.storage_url.rsplit(":", 1)[1].split("/")[0])
    return pg, int(info.tracking_url.rsplit(":", 1)[1])


def test_both_databases_take_the_pgpass_login_and_refuse_a_wrong_password(
    plain: ServiceInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert plain.started == ("postgres", "mlflow")
    assert set(plain.env) == {"PGPASSFILE"}
    monkeypatch.setenv("PGPASSFILE", plain.env["PGPASSFILE"])  # as a worker gets it
    pg_port, _ = _ports(plain)
    for database in ("optuna", "mlflow"):
        with psycopg.connect(
            host="127.0.0.1",
            port=pg_port,
            user="fmnist",
            dbname=database,
        ) as conn:
            tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables")}
        assert "alembic_version" in tables
        assert ("studies" if database == "optuna" else "experiments") in tables
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                host="127.0.0.1",
                port=pg_port,
                user="fmnist",
                dbname=database,
                password="wrong",
            )
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(host="127.0.0.1", port=pg_port, user="postgres", dbname="postgres")


def test_the_storage_url_serves_optuna_with_pgpassfile(
    plain: ServiceInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSFILE", plain.env["PGPASSFILE"])
    storage = optuna.storages.RDBStorage(plain.storage_url)
    try:
        study = optuna.create_study(study_name="services-test", storage=storage)
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
        assert len(optuna.load_study(study_name="services-test", storage=storage).trials) == 2
    finally:
        storage.engine.dispose()


def test_mlflow_answers_health_and_api_without_login(plain: ServiceInfo) -> None:
    assert _get(plain.tracking_url + "/health") == 200
    assert _get(plain.tracking_url + PROBE) == 200


def test_a_second_start_reuses_what_runs(plain: ServiceInfo) -> None:
    pid = (plain.dir / "mlflow.pid").read_text()
    pg_port, mlflow_port = _ports(plain)
    again = start(plain.dir, "127.0.0.1", pg_port, mlflow_port)
    assert again.started == ()
    assert (again.storage_url, again.tracking_url) == (plain.storage_url, plain.tracking_url)
    assert (plain.dir / "mlflow.pid").read_text() == pid
    with pytest.raises(ServiceError, match="already run with"):
        start(plain.dir, "127.0.0.1", pg_port, free_port())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _command_lines() -> str:
    lines = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(entry.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return "\n".join(lines)


def test_auth_start_stop_restart(state_dirs: list[Path]) -> None:
    folder = _new_dir(state_dirs)
    pg_port, mlflow_port = free_port(), free_port()
    flags = ["--dir", str(folder), "--pg-port", str(pg_port), "--mlflow-port", str(mlflow_port)]
    first = _cli("start", *flags, "--auth")
    assert first.returncode == 0, first.stderr
    info = status(folder).info
    assert info is not None and info.auth
    login = (info.env["MLFLOW_TRACKING_USERNAME"], info.env["MLFLOW_TRACKING_PASSWORD"])
    pg_password = read_pgpass_password(folder / "pgpass", "fmnist")
    assert pg_password and pg_password != login[1]

    # Only the env file's login opens the API.
    url = info.tracking_url + PROBE
    assert _get(url) == 401
    assert _get(url, login) == 200
    assert _get(url, (login[0], "wrong")) == 401
    assert _get(info.tracking_url + "/health") == 200

    # A second start (CLI) reuses both and prints how to use them, never a password.
    second = _cli("start", *flags, "--auth")
    assert second.returncode == 0, second.stderr
    assert "PostgreSQL: already running" in second.stdout
    assert f"source {folder}/env" in second.stdout
    assert f"make worker STORAGE={info.storage_url} TRACKING={info.tracking_url}" in second.stdout

    secret_files = ["pgpass", "env", "mlflow-auth.ini", "mlflow-secret-key", "mlflow-auth.db"]
    assert {name: _mode(folder / name) for name in secret_files} == dict.fromkeys(
        secret_files, 0o600
    )
    logs = [(folder / name).read_text() for name in ("mlflow.log", "postgres.log")]
    printed = [first.stdout, first.stderr, second.stdout, second.stderr, repr(info)]
    for password in (pg_password, login[1]):
        for text in [*printed, *logs, _command_lines()]:
            assert password not in text

    # stop: nothing left listening, the data kept; a restart finds it again.
    stopped = _cli("stop", "--dir", str(folder))
    assert stopped.returncode == 0, stopped.stderr
    assert not _listening(pg_port) and not _listening(mlflow_port)
    assert _cli("status", "--dir", str(folder)).returncode == 3
    assert (folder / "postgres" / "PG_VERSION").exists()

    again = start(folder, "127.0.0.1", pg_port, mlflow_port, auth=True)
    assert again.started == ("postgres", "mlflow")
    assert again.env == info.env
    assert _get(url, login) == 200
    assert stop(folder) == ("mlflow", "postgres")
    assert not _listening(pg_port) and not _listening(mlflow_port)
