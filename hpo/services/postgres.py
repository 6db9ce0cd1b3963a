"""A private PostgreSQL cluster in the state folder, run with the server's own tools.

`initdb` makes it once; every start rewrites `fmnist.conf` (included from postgresql.conf:
listen address, port, socket folder) and `pg_hba.conf` from the flags, so the flags are the
one source of truth. PostgreSQL refuses to run as root, so as root the cluster belongs to
the `postgres` OS user and its tools run through `runuser`; otherwise it belongs to the
caller. The superuser logs in only through the unix socket in the state folder (peer
authentication); over TCP only the `fmnist` role, with SCRAM, and only to its databases.
"""

from __future__ import annotations

import getpass
import logging
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hpo.services.errors import ServiceError
from hpo.services.layout import Layout, Settings

log = logging.getLogger(__name__)

ROLE = "fmnist"
# Separate databases: Optuna and MLflow each keep their schema version in Alembic's
# `alembic_version` table, which would clash in one database.
DATABASES = ("optuna", "mlflow")
_INCLUDE = "include 'fmnist.conf'  # added by hpo.services: listen address, port, socket\n"
_INSTALL_HINT = (
    "install the PostgreSQL server: `sudo apt-get install postgresql` (Debian/Ubuntu), "
    "`brew install postgresql` (macOS)"
)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def find_bindir(major: str | None = None) -> Path:
    """The folder of `initdb`/`pg_ctl`: Debian's newest (or `major`), pg_config's, or PATH's."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if major is not None:
        debian = [p for p in debian if p.parent.name == major] or debian
    candidates = list(debian)
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "psql")):
            return bindir
    raise ServiceError(f"PostgreSQL's initdb and pg_ctl were not found: {_INSTALL_HINT}")


def superuser() -> str:
    """The cluster's superuser role: the OS user that owns it (peer authentication)."""
    return "postgres" if os.geteuid() == 0 else getpass.getuser()


def _as_owner() -> list[str]:
    """The command prefix that runs a tool as the cluster's owner."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise ServiceError("running as root needs `runuser` (util-linux) to run PostgreSQL")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError(
            "running as root, PostgreSQL must run as the `postgres` OS user, which does "
            f"not exist: {_INSTALL_HINT} (it creates the user), or run as a normal user"
        ) from None
    return [runuser, "-u", "postgres", "--"]


def _run(command: Sequence[str], what: str, stdin: str | None = None) -> str:
    # cwd=/ because the owner may not be allowed into the caller's working directory.
    out = subprocess.run(
        [*_as_owner(), *command], input=stdin, capture_output=True, text=True, cwd="/"
    )
    if out.returncode != 0:
        raise ServiceError(f"{what} failed (exit {out.returncode}):\n{out.stdout}{out.stderr}")
    return out.stdout


def _give_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def prepare(layout: Layout) -> None:
    """Create the cluster's folders and log file, owned by the cluster's owner."""
    for folder in (layout.pg_data, layout.pg_socket_dir):
        folder.mkdir(mode=0o700, exist_ok=True)
        _give_to_owner(folder)
    layout.pg_log.touch(mode=0o600, exist_ok=True)
    _give_to_owner(layout.pg_log)
    if os.geteuid() == 0:
        # The state folder is root's: let the postgres user pass through it (not list it).
        layout.root.chmod(0o711)
        probe = subprocess.run([*_as_owner(), "test", "-w", str(layout.pg_data)], cwd="/")
        if probe.returncode != 0:
            raise ServiceError(
                f"the postgres OS user cannot reach {layout.pg_data}: a folder above it is "
                "closed to other users (mode 0700?). Make each one passable "
                "(chmod o+x) or choose another --dir"
            )


def installed_major(layout: Layout) -> str | None:
    """The PostgreSQL major version of the cluster, None if there is none yet."""
    marker = layout.pg_data / "PG_VERSION"
    return marker.read_text().strip() if marker.exists() else None


def init_cluster(bindir: Path, layout: Layout) -> None:
    log.info("Creating a PostgreSQL cluster in %s", layout.pg_data)
    _run(
        [
            str(bindir / "initdb"),
            "--pgdata",
            str(layout.pg_data),
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ],
        "initdb",
    )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def config_text(layout: Layout, settings: Settings) -> str:
    """`fmnist.conf`: listen on `--host` only, at `--pg-port`, socket in the state folder."""
    return (
        "# Rewritten by hpo.services on every start from its flags; change those instead.\n"
        f"listen_addresses = {_quote(settings.host)}\n"
        f"port = {settings.pg_port}\n"
        f"unix_socket_directories = {_quote(str(layout.pg_socket_dir))}\n"
        "unix_socket_permissions = 0700\n"
        "password_encryption = 'scram-sha-256'\n"
    )


def hba_lines(admin: str, open_to_network: bool) -> list[str]:
    """pg_hba.conf: the superuser by socket (peer); `fmnist` by TCP (SCRAM), its DBs only."""
    sources = ["127.0.0.1/32", "::1/128"]
    if open_to_network:
        sources += ["0.0.0.0/0", "::/0"]
    databases = ",".join(DATABASES)
    return [
        "# TYPE  DATABASE  USER  ADDRESS  METHOD  (rewritten by hpo.services on every start)",
        f'local   all  "{admin}"  peer',
        *(f"host    {databases}  {ROLE}  {source}  scram-sha-256" for source in sources),
    ]


def write_config(layout: Layout, settings: Settings, open_to_network: bool) -> None:
    """Point the cluster at the flags' address and port (takes effect on the next start)."""
    main_conf = layout.pg_data / "postgresql.conf"
    if _INCLUDE not in main_conf.read_text():
        with main_conf.open("a") as f:  # in place: the file keeps its owner
            f.write("\n" + _INCLUDE)
    conf = layout.pg_data / "fmnist.conf"
    conf.write_text(config_text(layout, settings))
    _give_to_owner(conf)
    hba = layout.pg_data / "pg_hba.conf"
    hba.write_text("\n".join(hba_lines(superuser(), open_to_network)) + "\n")


def is_running(bindir: Path, layout: Layout) -> bool:
    if installed_major(layout) is None:
        return False
    out = subprocess.run(
        [*_as_owner(), str(bindir / "pg_ctl"), "status", "--pgdata", str(layout.pg_data)],
        capture_output=True,
        cwd="/",
    )
    return out.returncode == 0


def start(bindir: Path, layout: Layout) -> None:
    log.info("Starting PostgreSQL (log: %s)", layout.pg_log)
    try:
        _run(
            [
                str(bindir / "pg_ctl"),
                "start",
                "--pgdata",
                str(layout.pg_data),
                "--log",
                str(layout.pg_log),
                "--wait",
                "--timeout=60",
            ],
            "pg_ctl start",
        )
    except ServiceError as e:
        tail = "".join(layout.pg_log.read_text(errors="replace").splitlines(True)[-20:])
        raise ServiceError(f"{e}\nlast lines of {layout.pg_log}:\n{tail}") from None


def stop(bindir: Path, layout: Layout) -> None:
    log.info("Stopping PostgreSQL")
    _run(
        [str(bindir / "pg_ctl"), "stop", "--pgdata", str(layout.pg_data), "-m", "fast", "--wait"],
        "pg_ctl stop",
    )


def provision_sql(verifier: str) -> str:
    """Role and databases, each created only if missing; the password as its SCRAM verifier.

    psql reads this on stdin, so nothing of it appears in a process list.
    """
    lines = [
        f"SELECT 'CREATE ROLE {ROLE} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{ROLE}') \\gexec",
        f"ALTER ROLE {ROLE} WITH LOGIN PASSWORD {_quote(verifier)};",
    ]
    for db in DATABASES:
        # CREATE DATABASE cannot run inside a DO block or transaction, hence \gexec.
        lines.append(
            f"SELECT 'CREATE DATABASE {db} OWNER {ROLE}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{db}') \\gexec"
        )
    return "\n".join(lines) + "\n"


def provision(bindir: Path, layout: Layout, settings: Settings, verifier: str) -> None:
    """Create the `fmnist` role (password `verifier`) and its databases, as the superuser."""
    _run(
        [
            str(bindir / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            f"--host={layout.pg_socket_dir}",
            f"--port={settings.pg_port}",
            f"--username={superuser()}",
            "--dbname=postgres",
        ],
        "creating the fmnist role and databases",
        stdin=provision_sql(verifier),
    )
