"""Addresses: which host a service binds, which one local clients dial, which one URLs name.

A wildcard bind (`0.0.0.0`, `::`) is no address a client can dial: the services' own
clients (MLflow's backend connection, the Optuna schema set-up, the health checks) dial
loopback instead, and the URLs printed for workers on other machines name this machine.
"""

from __future__ import annotations

import ipaddress
import socket

WILDCARDS = ("0.0.0.0", "::", "*")


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (`localhost`, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it resolves outwards


def local_host(host: str) -> str:
    """The address this machine's own clients dial to reach a service bound to `host`."""
    if host in WILDCARDS:
        return "::1" if host == "::" else "127.0.0.1"
    return host


def public_host(host: str) -> str:
    """The address named in the URLs handed to workers, which may run elsewhere."""
    return socket.gethostname() if host in WILDCARDS else host


def netloc(host: str, port: int) -> str:
    """`host:port`, with an IPv6 literal in brackets as URLs need it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def postgres_url(host: str, port: int, database: str, user: str) -> str:
    """A SQLAlchemy URL for psycopg 3 without a password: libpq reads it from PGPASSFILE."""
    return f"postgresql+psycopg://{user}@{netloc(host, port)}/{database}"


def http_url(host: str, port: int) -> str:
    return f"http://{netloc(host, port)}"


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on `host:port` (dialled as `local_host`)."""
    try:
        with socket.create_connection((local_host(host), port), timeout=1.0):
            return True
    except OSError:
        return False
