"""A TCP port on 127.0.0.1 that nothing listens on, for servers tests start (or expect absent).

A plain module, not conftest.py (as hydra_cli.py): imported by name from tests in subfolders.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the OS just handed out and released: free now, closed until someone binds it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
