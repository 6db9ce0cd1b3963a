"""Detached process groups: start one that outlives its caller, tell if it lives, end it.

The MLflow server runs as the leader of its own session (`start_new_session=True`), so
the uvicorn workers it forks share its process group and one signal to the group reaches
them all. Zombies count as gone: a process that has exited but was not yet reaped by its
parent (the caller of `spawn`, or an init that does not reap) holds no port and no file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Children this process spawned, kept so they are reaped (and not warned about as still
# running when their Popen is collected) when they end.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_PROC = Path("/proc")


def spawn(
    command: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start `command` as the leader of a new session, stdout and stderr appended to `log`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _state(pid: int) -> str | None:
    """The one-letter state in /proc/<pid>/stat, None if gone or where /proc is missing."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may contain spaces; the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def is_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return _state(pid) != "Z" if _PROC.is_dir() else True


def _group_alive(pgid: int) -> bool:
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        # Fields after the command name: state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate_group(pgid: int, grace: float = 15.0) -> None:
    """SIGTERM the process group `pgid`, then SIGKILL whatever is left after `grace` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        if wait_for(lambda: not is_alive(pgid) and not _group_alive(pgid), wait):
            break
    child = _CHILDREN.pop(pgid, None)
    if child is not None and child.poll() is None:
        child.wait(timeout=5)


def command_line(pid: int) -> list[str] | None:
    """The argv of `pid` where /proc tells it, else None."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
