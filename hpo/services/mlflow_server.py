"""`mlflow server` on the PostgreSQL backend, as a detached process with a pid file.

It runs from the venv's own `mlflow` executable (this package never imports mlflow), so it
is the MLflow the project pins. With auth it runs MLflow's basic-auth app, which reads its
config (admin user, its password, the sqlite user store) from the ini named by
MLFLOW_AUTH_CONFIG_PATH.
"""

from __future__ import annotations

import base64
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import hpo.services.processes as processes
from hpo.services.errors import ServiceError
from hpo.services.layout import Layout
from hpo.services.network import http_url, netloc

log = logging.getLogger(__name__)

# Any API call that needs a login when auth is on; cheap, and it reads the backend store.
PROBE_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
# Set in the caller's environment, these would override the state folder's credentials.
_OVERRIDING_ENV = (
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)


def mlflow_executable() -> Path:
    """The venv's `mlflow` script, beside the running interpreter."""
    exe = Path(sys.executable).parent / "mlflow"
    if not exe.is_file():
        raise ServiceError(f"{exe} not found: install the project first (make install)")
    return exe


@dataclass(frozen=True)
class ServerSpec:
    """What `build_command` needs; `public_host` is the name clients put in the URL."""

    backend_uri: str
    artifacts: Path
    host: str
    port: int
    public_host: str
    open_to_network: bool
    auth: bool
    workers: int


def allowed_hosts(spec: ServerSpec) -> list[str]:
    """Host headers the server accepts when it listens beyond loopback.

    Setting --allowed-hosts replaces MLflow's default (localhost and private ranges), so
    the loopback names stay in the list for the checks `start` makes from this machine.
    """
    names = dict.fromkeys([spec.public_host, spec.host, "localhost", "127.0.0.1", "[::1]"])
    names.pop("0.0.0.0", None)
    names.pop("::", None)
    hosts: list[str] = []
    for name in names:
        shown = f"[{name}]" if ":" in name and not name.startswith("[") else name
        hosts += [shown, f"{shown}:{spec.port}"]
    return hosts


def build_command(mlflow: Path, spec: ServerSpec) -> list[str]:
    command = [
        str(mlflow),
        "server",
        "--backend-store-uri",
        spec.backend_uri,
        "--artifacts-destination",
        str(spec.artifacts),
        "--serve-artifacts",
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--workers",
        str(spec.workers),
    ]
    if spec.open_to_network:
        command += ["--allowed-hosts", ",".join(allowed_hosts(spec))]
    if spec.auth:
        command += ["--app-name", "basic-auth"]
    return command


def server_env(
    base: Mapping[str, str], pgpass: Path, auth: tuple[Path, str] | None
) -> dict[str, str]:
    """The server's environment: libpq's password file, and with auth the basic-auth ini and
    the Flask secret key the auth app signs its CSRF tokens with (`auth`: both, or None).
    """
    env = {k: v for k, v in base.items() if k not in _OVERRIDING_ENV}
    env["PGPASSFILE"] = str(pgpass)
    # The job runner forks about seven huey consumers for GenAI evaluation jobs, which a
    # search never submits; on a small machine they compete with training for the cores.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if auth is not None:
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth[0])
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = auth[1]
    else:
        env.pop("MLFLOW_AUTH_CONFIG_PATH", None)
    return env


def running_pid(layout: Layout) -> int | None:
    """The pid in the pid file if that process still runs and is an MLflow server."""
    try:
        pid = int(layout.mlflow_pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not processes.is_alive(pid):
        return None
    argv = processes.command_line(pid)
    # A recycled pid belongs to some other program: not ours to report or signal.
    if argv is not None and not any(Path(a).name == "mlflow" for a in argv[:2]):
        return None
    return pid


def request_status(url: str, credentials: tuple[str, str] | None = None) -> int | None:
    """The HTTP status of a GET to `url`, None when nothing answers."""
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


def _log_tail(path: Path, offset: int, lines: int = 30) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return "".join(text.splitlines(True)[-lines:])


def start(
    layout: Layout, spec: ServerSpec, env: Mapping[str, str], local: str, timeout: float
) -> int:
    """Start the server, wait until `http://local:port/health` answers; its pid."""
    layout.artifacts.mkdir(exist_ok=True)
    offset = layout.mlflow_log.stat().st_size if layout.mlflow_log.exists() else 0
    command = build_command(mlflow_executable(), spec)
    log.info("Starting the MLflow server (log: %s)", layout.mlflow_log)
    proc = processes.spawn(command, env, layout.mlflow_log, cwd=layout.root)
    layout.mlflow_pid.write_text(f"{proc.pid}\n")
    health = http_url(local, spec.port) + "/health"
    deadline = time.monotonic() + timeout
    while request_status(health) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            why = "exited" if proc.poll() is not None else f"gave no answer in {timeout:.0f} s"
            stop(layout)
            raise ServiceError(
                f"the MLflow server on {netloc(spec.host, spec.port)} {why}; last lines of "
                f"{layout.mlflow_log}:\n{_log_tail(layout.mlflow_log, offset)}"
            )
        time.sleep(0.5)
    return proc.pid


def stop(layout: Layout) -> bool:
    """End the server's process group (SIGTERM, then SIGKILL); whether one was running."""
    pid = running_pid(layout)
    if pid is not None:
        log.info("Stopping the MLflow server (pid %d)", pid)
        processes.terminate_group(pid)
    layout.mlflow_pid.unlink(missing_ok=True)
    return pid is not None
