"""What the services are started with: addresses, PostgreSQL config, MLflow's command line,
the CLI, and process groups (no PostgreSQL or MLflow here)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo.services import mlflow_server, postgres, processes
from hpo.services.__main__ import main
from hpo.services.layout import Layout, Settings
from hpo.services.network import (
    http_url,
    is_loopback,
    local_host,
    postgres_url,
    public_host,
)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("myhost.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_wildcard_binds_are_dialled_on_loopback_and_named_by_host_name() -> None:
    assert local_host("0.0.0.0") == "127.0.0.1"
    assert local_host("::") == "::1"
    assert local_host("10.0.0.5") == "10.0.0.5"
    assert public_host("10.0.0.5") == "10.0.0.5"
    assert public_host("0.0.0.0") not in ("0.0.0.0", "")


def test_urls_carry_no_password_and_bracket_ipv6() -> None:
    assert (
        postgres_url("::1", 5433, "optuna", "fmnist")
        == "postgresql+psycopg://fmnist@[::1]:5433/optuna"
    )
    assert http_url("127.0.0.1", 5000) == "http://127.0.0.1:5000"
    assert http_url("::1", 5000) == "http://[::1]:5000"


def test_hba_on_loopback_lets_fmnist_in_from_this_machine_only() -> None:
    lines = postgres.hba_lines("postgres", open_to_network=False)
    rules = [line.split() for line in lines if not line.startswith("#")]
    assert rules == [
        ["local", "all", '"postgres"', "peer"],
        ["host", "optuna,mlflow", "fmnist", "127.0.0.1/32", "scram-sha-256"],
        ["host", "optuna,mlflow", "fmnist", "::1/128", "scram-sha-256"],
    ]


def test_hba_open_to_the_network_still_demands_scram() -> None:
    rules = [line.split() for line in postgres.hba_lines("alice", open_to_network=True)[1:]]
    assert rules[0] == ["local", "all", '"alice"', "peer"]
    assert [rule[3] for rule in rules[1:]] == ["127.0.0.1/32", "::1/128", "0.0.0.0/0", "::/0"]
    assert {rule[-1] for rule in rules[1:]} == {"scram-sha-256"}
    assert {rule[2] for rule in rules[1:]} == {"fmnist"}


def test_postgres_listens_only_on_the_host_with_its_socket_in_the_state_folder() -> None:
    layout = Layout(Path("/state/it's"))
    text = postgres.config_text(layout, Settings("10.0.0.5", 6543, 5000, auth=True))
    assert "listen_addresses = '10.0.0.5'\n" in text
    assert "port = 6543\n" in text
    assert "unix_socket_directories = '/state/it''s/socket'\n" in text
    assert "password_encryption = 'scram-sha-256'\n" in text


def test_provisioning_sql_is_idempotent_and_holds_no_plain_password() -> None:
    verifier = "SCRAM-SHA-256$4096:c2FsdA==$a:b"
    sql = postgres.provision_sql(verifier)
    assert f"ALTER ROLE fmnist WITH LOGIN PASSWORD '{verifier}';" in sql
    for statement in (
        "CREATE ROLE fmnist LOGIN",
        "CREATE DATABASE optuna OWNER fmnist",
        "CREATE DATABASE mlflow OWNER fmnist",
    ):
        assert f"'{statement}' WHERE NOT EXISTS" in sql


def _spec(
    host: str = "127.0.0.1", auth: bool = False, public: str | None = None
) -> mlflow_server.ServerSpec:
    return mlflow_server.ServerSpec(
        backend_uri="postgresql+psycopg://fmnist@127.0.0.1:5433/mlflow",
        artifacts=Path("/state/mlartifacts"),
        host=host,
        port=5000,
        public_host=public or host,
        open_to_network=not is_loopback(host),
        auth=auth,
        workers=2,
    )


def test_mlflow_command_on_loopback() -> None:
    command = mlflow_server.build_command(Path("/venv/bin/mlflow"), _spec())
    assert command == [
        "/venv/bin/mlflow", "server",
        "--backend-store-uri", "postgresql+psycopg://fmnist@127.0.0.1:5433/mlflow",
        "--artifacts-destination", "/state/mlartifacts", "--serve-artifacts",
        "--host", "127.0.0.1", "--port", "5000", "--workers", "2",
    ]  # fmt: skip


def test_mlflow_command_with_auth_on_loopback_runs_the_basic_auth_app() -> None:
    command = mlflow_server.build_command(Path("mlflow"), _spec(auth=True))
    assert command[-2:] == ["--app-name", "basic-auth"]
    assert "--allowed-hosts" not in command


def test_mlflow_command_open_to_the_network_names_its_allowed_hosts() -> None:
    command = mlflow_server.build_command(Path("mlflow"), _spec("0.0.0.0", True, "vm"))
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert allowed[:2] == ["vm", "vm:5000"]
    assert {"localhost:5000", "127.0.0.1:5000", "[::1]:5000"} <= set(allowed)
    assert not any(h.startswith("0.0.0.0") for h in allowed)
    assert command[-2:] == ["--app-name", "basic-auth"]


def test_server_env_keeps_the_state_folders_credentials_in_charge() -> None:
    base = {"PATH": "/bin", "MLFLOW_AUTH_ADMIN_PASSWORD": "x", "MLFLOW_AUTH_CONFIG_PATH": "/o"}
    plain = mlflow_server.server_env(base, Path("/s/pgpass"), None)
    assert plain["PGPASSFILE"] == "/s/pgpass"
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in plain
    assert "MLFLOW_AUTH_CONFIG_PATH" not in plain
    authed = mlflow_server.server_env(base, Path("/s/pgpass"), (Path("/s/auth.ini"), "key"))
    assert authed["MLFLOW_AUTH_CONFIG_PATH"] == "/s/auth.ini"
    assert authed["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "key"
    assert authed["PATH"] == "/bin"


def test_status_of_a_folder_never_started(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--dir", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "PostgreSQL: stopped" in out and "MLflow server: stopped" in out
    assert "never started" in out


def test_stop_in_a_folder_never_started_is_harmless(tmp_path: Path) -> None:
    assert main(["stop", "--dir", str(tmp_path)]) == 0


def test_cli_rejects_bad_flags_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["start", "--dir", str(tmp_path), "--pg-port", "5000"]) == 1
    assert "give two different ports" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["restart"])


def test_terminate_group_ends_the_leader_and_its_children(tmp_path: Path) -> None:
    # The leader forks a child that ignores SIGTERM: only the SIGKILL after the grace ends it.
    script = "trap '' TERM; sleep 60 & wait"
    proc = processes.spawn(
        ["bash", "-c", script], {"PATH": "/usr/bin:/bin"}, tmp_path / "log", tmp_path
    )
    time.sleep(0.3)
    assert processes.is_alive(proc.pid)
    started = time.monotonic()
    processes.terminate_group(proc.pid, grace=1.0)
    assert not processes.is_alive(proc.pid)
    assert time.monotonic() - started < 8
    group = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
    assert not [pid for pid in group.stdout.split() if processes.is_alive(int(pid))]


def test_a_dead_pid_is_not_alive() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert not processes.is_alive(int(proc.stdout))
