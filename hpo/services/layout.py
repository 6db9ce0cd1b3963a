"""The state folder: every file and folder `start` creates, and the settings it ran with.

`<dir>/postgres` (the cluster), `<dir>/socket` (PostgreSQL's unix socket, for the superuser
only), `<dir>/mlartifacts`, logs, the pid file, the credential files (mode 0600) and
`services.json`, the flags of the last `start`, so `status` and a second `start` know them.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from hpo.paths import PROJECT_ROOT

DEFAULT_DIR: Path = PROJECT_ROOT / ".services"
# The kernel limits a unix socket path to 108 bytes including the final NUL.
_MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Layout:
    """Paths under one state folder (always absolute)."""

    root: Path

    @classmethod
    def of(cls, directory: Path) -> Layout:
        return cls(Path(directory).expanduser().resolve())

    @property
    def pg_data(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def pg_log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def auth_ini(self) -> Path:
        return self.root / "mlflow-auth.ini"

    @property
    def flask_secret(self) -> Path:
        return self.root / "mlflow-secret-key"

    @property
    def auth_db(self) -> Path:
        return self.root / "mlflow-auth.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def mlflow_log(self) -> Path:
        return self.root / "mlflow.log"

    @property
    def mlflow_pid(self) -> Path:
        return self.root / "mlflow.pid"

    @property
    def settings(self) -> Path:
        return self.root / "services.json"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock: two starts (or a start and a stop) at once take turns."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield

    def socket_path(self, pg_port: int) -> Path:
        return self.pg_socket_dir / f".s.PGSQL.{pg_port}"

    def check_socket_path(self, pg_port: int) -> None:
        path = str(self.socket_path(pg_port))
        if len(path.encode()) > _MAX_SOCKET_PATH:
            raise ValueError(
                f"--dir {self.root} is too deep for PostgreSQL's unix socket ({path} is "
                f"{len(path.encode())} bytes, the limit is {_MAX_SOCKET_PATH}): choose a "
                "shorter --dir"
            )


@dataclass(frozen=True)
class Settings:
    """The flags `start` ran with."""

    host: str
    pg_port: int
    mlflow_port: int
    auth: bool

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() or c in "'\"," for c in self.host):
            raise ValueError(f"--host {self.host!r} is not an address: give an IP or host name")
        for flag, port in (("--pg-port", self.pg_port), ("--mlflow-port", self.mlflow_port)):
            if not 1 <= port <= 65535:
                raise ValueError(f"{flag} {port} is not a TCP port: give 1-65535")
        if self.pg_port == self.mlflow_port:
            raise ValueError(
                f"--pg-port and --mlflow-port are both {self.pg_port}: give two different ports"
            )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Settings | None:
        """The saved settings, or None when `start` never ran in this folder."""
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(
            host=str(data["host"]),
            pg_port=int(data["pg_port"]),
            mlflow_port=int(data["mlflow_port"]),
            auth=bool(data["auth"]),
        )
