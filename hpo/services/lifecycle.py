"""start, stop and status of the whole set: PostgreSQL, Optuna's schema, the MLflow server.

Each step checks what is already there and reuses it, so `start` may run any number of
times; it refuses only when the services run with other flags than those asked for.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import hpo.services.credentials as credentials
import hpo.services.mlflow_server as mlflow_server
import hpo.services.postgres as postgres
from hpo.services.errors import ServiceError
from hpo.services.layout import DEFAULT_DIR, Layout, Settings
from hpo.services.network import (
    http_url,
    is_loopback,
    local_host,
    port_in_use,
    postgres_url,
    public_host,
)
from hpo.services.optuna_schema import create_schema

log = logging.getLogger(__name__)

MLFLOW_USER = "fmnist"


@dataclass(frozen=True)
class ServiceInfo:
    """How clients reach a running set of services.

    Attributes:
        dir: the state folder.
        storage_url: Optuna storage URL (no password: libpq reads it from PGPASSFILE).
        tracking_url: MLflow tracking URL.
        env: what a client process needs in its environment: PGPASSFILE, and with auth
            MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (kept out of repr).
        env_file: the same as shell `export` lines, for `source`.
        auth: whether the MLflow server asks for a login.
        open_to_network: whether the ports accept other hosts.
        started: the services this call started ("postgres", "mlflow"); the others were
            already running.
    """

    dir: Path
    storage_url: str
    tracking_url: str
    env: dict[str, str] = field(repr=False)
    env_file: Path
    auth: bool
    open_to_network: bool
    started: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceStatus:
    """What runs in a state folder; `info` is None when `start` never ran there."""

    dir: Path
    postgres_running: bool
    mlflow_running: bool
    info: ServiceInfo | None


def _pg_password(layout: Layout, settings: Settings) -> str:
    """The `fmnist` role's password, generated the first time, in `pgpass` (0600)."""
    password = credentials.read_pgpass_password(layout.pgpass, postgres.ROLE)
    password = password or credentials.generate_password()
    hosts = [local_host(settings.host), public_host(settings.host)]
    text = credentials.pgpass_text(hosts, settings.pg_port, postgres.ROLE, password)
    credentials.write_private(layout.pgpass, text)
    return password


def _client_env(layout: Layout, settings: Settings, mlflow_password: str | None) -> dict[str, str]:
    env = {"PGPASSFILE": str(layout.pgpass)}
    if settings.auth and mlflow_password is not None:
        env["MLFLOW_TRACKING_USERNAME"] = MLFLOW_USER
        env["MLFLOW_TRACKING_PASSWORD"] = mlflow_password
    return env


def _write_client_files(layout: Layout, settings: Settings) -> dict[str, str]:
    """The auth ini (with auth) and the env file, both 0600; the env clients need."""
    password = None
    if settings.auth:
        password = credentials.read_auth_password(layout.auth_ini)
        password = password or credentials.generate_password()
        ini = credentials.auth_ini_text(f"sqlite:///{layout.auth_db}", MLFLOW_USER, password)
        credentials.write_private(layout.auth_ini, ini)
        # MLflow's user store holds password hashes: create it 0600 before MLflow does.
        layout.auth_db.touch(mode=0o600, exist_ok=True)
    env = _client_env(layout, settings, password)
    credentials.write_private(layout.env_file, credentials.env_text(env))
    return env


def _describe(
    layout: Layout, settings: Settings, env: dict[str, str], started: tuple[str, ...] = ()
) -> ServiceInfo:
    host = public_host(settings.host)
    return ServiceInfo(
        dir=layout.root,
        storage_url=postgres_url(host, settings.pg_port, "optuna", postgres.ROLE),
        tracking_url=http_url(host, settings.mlflow_port),
        env=env,
        env_file=layout.env_file,
        auth=settings.auth,
        open_to_network=not is_loopback(settings.host),
        started=started,
    )


def _check_free(host: str, port: int, flag: str) -> None:
    if port_in_use(host, port):
        raise ServiceError(
            f"port {port} on {local_host(host)} is taken by another program: stop it or "
            f"choose another {flag}"
        )


def _flags(settings: Settings) -> str:
    auth = " --auth" if settings.auth else ""
    return (
        f"--host {settings.host} --pg-port {settings.pg_port} "
        f"--mlflow-port {settings.mlflow_port}{auth}"
    )


def _check_unchanged(layout: Layout, settings: Settings) -> None:
    previous = Settings.load(layout.settings)
    if previous is not None and previous != settings:
        raise ServiceError(
            f"the services in {layout.root} already run with {_flags(previous)}: stop them "
            f"first (python -m hpo.services stop --dir {layout.root}) or start with those flags"
        )


def _start_postgres(bindir: Path, layout: Layout, settings: Settings) -> None:
    _check_free(settings.host, settings.pg_port, "--pg-port")
    postgres.prepare(layout)
    if postgres.installed_major(layout) is None:
        postgres.init_cluster(bindir, layout)
    postgres.write_config(layout, settings, open_to_network=not is_loopback(settings.host))
    postgres.start(bindir, layout)


def _start_mlflow(layout: Layout, settings: Settings, timeout: float) -> None:
    _check_free(settings.host, settings.mlflow_port, "--mlflow-port")
    local = local_host(settings.host)
    spec = mlflow_server.ServerSpec(
        backend_uri=postgres_url(local, settings.pg_port, "mlflow", postgres.ROLE),
        artifacts=layout.artifacts,
        host=settings.host,
        port=settings.mlflow_port,
        public_host=public_host(settings.host),
        open_to_network=not is_loopback(settings.host),
        auth=settings.auth,
        # One worker per core, at most MLflow's default of 4.
        workers=min(4, os.cpu_count() or 1),
    )
    auth = None
    if settings.auth:
        auth = (layout.auth_ini, credentials.read_or_create_secret(layout.flask_secret))
    env = mlflow_server.server_env(os.environ, layout.pgpass, auth)
    mlflow_server.start(layout, spec, env, local, timeout)


def _verify_mlflow(settings: Settings, env: dict[str, str]) -> None:
    """The API answers; with auth, only to a login, and to the login clients are given."""
    url = http_url(local_host(settings.host), settings.mlflow_port) + mlflow_server.PROBE_PATH
    anonymous = mlflow_server.request_status(url)
    if not settings.auth:
        if anonymous != 200:
            raise ServiceError(f"the MLflow server answered {anonymous} to {url}, not 200")
        return
    if anonymous != 401:
        raise ServiceError(
            f"the MLflow server answered {anonymous} to {url} without a login, not 401"
        )
    login = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    if (code := mlflow_server.request_status(url, login)) != 200:
        raise ServiceError(
            f"the MLflow server answered {code} to {url} with the login of the env file, "
            "not 200: its user store may hold another admin password (remove "
            "mlflow-auth.db in the state folder to reset it)"
        )


def start(
    dir: Path = DEFAULT_DIR,
    host: str = "127.0.0.1",
    pg_port: int = 5433,
    mlflow_port: int = 5000,
    auth: bool = False,
    *,
    timeout: float = 60.0,
) -> ServiceInfo:
    """Start PostgreSQL and the MLflow server in `dir`, or reuse those already running.

    Args:
        dir: the state folder (created if missing): cluster, logs, credential files.
        host: the address both services listen on; not loopback opens them to other hosts,
            with SCRAM for PostgreSQL and a login for MLflow.
        pg_port: PostgreSQL's TCP port.
        mlflow_port: the MLflow server's port.
        auth: require a login to MLflow on loopback too (always on beyond loopback).
        timeout: seconds to wait for the MLflow server to answer.

    Raises:
        ServiceError: a service could not start, or runs with other flags.
        ValueError: a flag is invalid.
    """
    settings = Settings(host, pg_port, mlflow_port, auth or not is_loopback(host))
    layout = Layout.of(dir)
    layout.check_socket_path(pg_port)
    with layout.locked():
        return _start(layout, settings, timeout)


def _start(layout: Layout, settings: Settings, timeout: float) -> ServiceInfo:
    bindir = postgres.find_bindir(postgres.installed_major(layout))
    pg_up = postgres.is_running(bindir, layout)
    mlflow_up = mlflow_server.running_pid(layout) is not None
    if pg_up or mlflow_up:
        _check_unchanged(layout, settings)
    settings.save(layout.settings)
    password = _pg_password(layout, settings)
    env = _write_client_files(layout, settings)
    if not pg_up:
        _start_postgres(bindir, layout, settings)
    postgres.provision(bindir, layout, settings, credentials.scram_verifier(password))
    local = local_host(settings.host)
    create_schema(postgres_url(local, settings.pg_port, "optuna", postgres.ROLE), layout.pgpass)
    if not mlflow_up:
        _start_mlflow(layout, settings, timeout)
    try:
        _verify_mlflow(settings, env)
    except ServiceError:
        if not mlflow_up:
            mlflow_server.stop(layout)
        raise
    started = ("postgres",) * (not pg_up) + ("mlflow",) * (not mlflow_up)
    return _describe(layout, settings, env, started)


def stop(dir: Path = DEFAULT_DIR) -> tuple[str, ...]:
    """Stop the MLflow server and PostgreSQL in `dir`, keeping all data; those stopped."""
    layout = Layout.of(dir)
    if not layout.root.is_dir():
        return ()
    with layout.locked():
        stopped: tuple[str, ...] = ("mlflow",) if mlflow_server.stop(layout) else ()
        major = postgres.installed_major(layout)
        if major is not None:
            bindir = postgres.find_bindir(major)
            if postgres.is_running(bindir, layout):
                postgres.stop(bindir, layout)
                stopped += ("postgres",)
    return stopped


def status(dir: Path = DEFAULT_DIR) -> ServiceStatus:
    """What runs in `dir`, and how to reach it (changes nothing)."""
    layout = Layout.of(dir)
    major = postgres.installed_major(layout)
    pg_up = major is not None and postgres.is_running(postgres.find_bindir(major), layout)
    settings = Settings.load(layout.settings)
    info = None
    if settings is not None:
        password = credentials.read_auth_password(layout.auth_ini) if settings.auth else None
        info = _describe(layout, settings, _client_env(layout, settings, password))
    return ServiceStatus(
        dir=layout.root,
        postgres_running=pg_up,
        mlflow_running=mlflow_server.running_pid(layout) is not None,
        info=info,
    )
