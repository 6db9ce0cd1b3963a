"""The state folder's files: credentials (format, mode 0600), settings, paths (no servers)."""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from hpo.services import credentials
from hpo.services.layout import Layout, Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_pgpass_has_one_libpq_line_per_host() -> None:
    text = credentials.pgpass_text(["127.0.0.1", "vm", "127.0.0.1"], 5433, "fmnist", "s3cret")
    assert text == "127.0.0.1:5433:*:fmnist:s3cret\nvm:5433:*:fmnist:s3cret\n"


@pytest.mark.parametrize("password", ["plain", "with:colon", "back\\slash", "both\\:x"])
def test_pgpass_escapes_and_reads_back(tmp_path: Path, password: str) -> None:
    path = tmp_path / "pgpass"
    path.write_text(credentials.pgpass_text(["::1"], 5433, "fmnist", password))
    assert path.read_text().startswith("\\:\\:1:5433:*:fmnist:")
    assert credentials.read_pgpass_password(path, "fmnist") == password
    assert credentials.read_pgpass_password(path, "someone") is None
    assert credentials.read_pgpass_password(tmp_path / "missing", "fmnist") is None


def test_generated_passwords_are_long_random_and_need_no_escaping() -> None:
    passwords = {credentials.generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", p) for p in passwords)


def test_private_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("old\n")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        credentials.write_private(path, "export A=1\n")
    finally:
        os.umask(old_umask)
    assert _mode(path) == 0o600
    assert path.read_text() == "export A=1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["env"]  # no temporary file left


def test_a_secret_is_generated_once(tmp_path: Path) -> None:
    path = tmp_path / "key"
    first = credentials.read_or_create_secret(path)
    assert credentials.read_or_create_secret(path) == first
    assert _mode(path) == 0o600


def test_scram_verifier_has_postgres_format_and_depends_on_salt() -> None:
    verifier = credentials.scram_verifier("pencil", salt=b"0123456789abcdef")
    match = re.fullmatch(r"SCRAM-SHA-256\$4096:([^$]+)\$([^:]+):(.+)", verifier)
    assert match
    assert match.group(1) == "MDEyMzQ1Njc4OWFiY2RlZg=="  # base64 of the salt
    assert all(len(match.group(i)) == 44 for i in (2, 3))  # base64 of 32-byte keys
    assert "pencil" not in verifier
    assert credentials.scram_verifier("pencil", salt=b"0123456789abcdef") == verifier
    assert credentials.scram_verifier("pencil") != verifier


def test_env_file_exports_quoted_values(tmp_path: Path) -> None:
    env = {"PGPASSFILE": str(tmp_path / "a dir" / "pgpass"), "MLFLOW_TRACKING_PASSWORD": "x'y"}
    path = tmp_path / "env"
    path.write_text(credentials.env_text(env))
    out = subprocess.run(
        [
            "bash",
            "-c",
            f'source {path} && printf "%s|%s" "$PGPASSFILE" "$MLFLOW_TRACKING_PASSWORD"',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == f"{tmp_path}/a dir/pgpass|x'y"


def test_auth_ini_uses_the_keys_of_mlflows_own(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("mlflow")  # locates the package without importing it
    assert spec is not None and spec.origin is not None
    shipped = configparser.ConfigParser()
    shipped.read(Path(spec.origin).parent / "server" / "auth" / "basic_auth.ini")
    path = tmp_path / "auth.ini"
    path.write_text(credentials.auth_ini_text("sqlite:////x/auth.db", "fmnist", "pw%1"))
    ours = configparser.ConfigParser(interpolation=None)
    ours.read(path)
    assert set(ours["mlflow"]) <= set(shipped["mlflow"]) | {"admin_password"}
    assert dict(ours["mlflow"]) == {
        "default_permission": "READ",
        "database_uri": "sqlite:////x/auth.db",
        "admin_username": "fmnist",
        "admin_password": "pw%1",
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    assert credentials.read_auth_password(path) == "pw%1"
    assert credentials.read_auth_password(tmp_path / "missing.ini") is None


def test_settings_round_trip(tmp_path: Path) -> None:
    settings = Settings("0.0.0.0", 5433, 5000, auth=True)
    settings.save(tmp_path / "services.json")
    assert Settings.load(tmp_path / "services.json") == settings
    assert Settings.load(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    ("host", "pg_port", "mlflow_port", "message"),
    [
        ("127.0.0.1", 0, 5000, "--pg-port 0"),
        ("127.0.0.1", 5433, 70000, "--mlflow-port 70000"),
        ("127.0.0.1", 5000, 5000, "both 5000"),
        ("", 5433, 5000, "--host"),
        ("a b", 5433, 5000, "--host"),
        ("x'; drop", 5433, 5000, "--host"),
    ],
)
def test_bad_flags_are_refused(host: str, pg_port: int, mlflow_port: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings(host, pg_port, mlflow_port, auth=False)


def test_layout_is_absolute_and_refuses_a_too_long_socket_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    layout = Layout.of(Path("state"))
    assert layout.root == tmp_path / "state"
    assert layout.socket_path(5433) == tmp_path / "state" / "socket" / ".s.PGSQL.5433"
    Layout.of(Path("/tmp/s")).check_socket_path(5433)
    with pytest.raises(ValueError, match="shorter --dir"):
        Layout.of(Path("/tmp") / ("d" * 100)).check_socket_path(5433)
