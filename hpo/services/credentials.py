"""Generated passwords and the files that hold them, readable by their owner only (0600).

Each secret is generated once and read back on every later start: the PostgreSQL password
of the `fmnist` role (kept in `pgpass`, libpq's password file, so no URL ever carries it),
and with auth the MLflow admin password (kept in the basic-auth ini MLflow reads) and the
key MLflow's auth app signs CSRF tokens with. The two passwords differ on purpose: basic
auth sends its password in clear over plain HTTP, and a password sniffed there must not
open the database too.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import hmac
import os
import secrets
import shlex
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

_SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)


def generate_password() -> str:
    """256 random bits, URL-safe, so it needs no escaping in any of the files."""
    return secrets.token_urlsafe(32)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically (readers see old or new, never half).

    The file is created 0600 before anything is written, so the secret is never readable by
    others even for a moment, whatever the umask.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_or_create_secret(path: Path) -> str:
    """The secret in `path`, generated and written there (0600) the first time."""
    if path.exists():
        return path.read_text().strip()
    secret = generate_password()
    write_private(path, secret + "\n")
    return secret


def _pgpass_field(value: str) -> str:
    # libpq's password file escapes its separator and the escape character.
    return value.replace("\\", "\\\\").replace(":", "\\:")


def pgpass_text(hosts: Iterable[str], port: int, user: str, password: str) -> str:
    """libpq's `.pgpass` format, one `host:port:*:user:password` line per host name."""
    return "".join(
        ":".join(map(_pgpass_field, (host, str(port), "*", user, password))) + "\n"
        for host in dict.fromkeys(hosts)
    )


def _pgpass_fields(line: str) -> list[str]:
    fields: list[str] = []
    field, escaped = "", False
    for char in line:
        if escaped:
            field, escaped = field + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields, field = [*fields, field], ""
        else:
            field += char
    return [*fields, field]


def read_pgpass_password(path: Path, user: str) -> str | None:
    """The password of `user` in a password file written by `pgpass_text`, or None."""
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        fields = _pgpass_fields(line)
        if len(fields) == 5 and fields[3] == user and fields[4]:
            return fields[4]
    return None


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677).

    Setting a role's password to its verifier means the password itself never reaches the
    server: not its statement log, not an error message quoting the statement.
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def env_text(env: Mapping[str, str]) -> str:
    """Shell lines that export `env`, for `source <dir>/env`."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def auth_ini_text(database_uri: str, username: str, password: str) -> str:
    """MLflow's basic-auth config (the keys of mlflow/server/auth/basic_auth.ini).

    Everyone else who logs in may read (`default_permission = READ`); the admin created
    from `admin_username`/`admin_password` on first start may do everything.
    """
    settings = {
        "default_permission": "READ",
        "database_uri": database_uri,
        "admin_username": username,
        "admin_password": password,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    return "[mlflow]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())


def read_auth_password(path: Path) -> str | None:
    """The admin password in an ini written by `auth_ini_text`, or None."""
    if not path.exists():
        return None
    config = configparser.ConfigParser(interpolation=None)
    config.read(path)
    return config.get("mlflow", "admin_password", fallback=None) or None
