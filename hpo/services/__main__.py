"""`python -m hpo.services start|stop|status`: the command line of `make services`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hpo.services.errors import ServiceError
from hpo.services.layout import DEFAULT_DIR
from hpo.services.lifecycle import ServiceInfo, start, status, stop

_NAMES = {"postgres": "PostgreSQL", "mlflow": "MLflow server"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hpo.services",
        description="Local PostgreSQL (Optuna storage, MLflow store) and an MLflow server.",
    )
    parser.add_argument(
        "action",
        choices=("start", "stop", "status"),
        help="start (reusing what runs), stop (keeping the data), or show what runs; the "
        "other flags are for start (stop and status read those start saved)",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (%(default)s)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (%(default)s); any other than loopback opens the ports "
        "to other hosts and turns MLflow's login on",
    )
    parser.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL's port (%(default)s)")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="MLflow's port (%(default)s)")
    parser.add_argument(
        "--auth", action="store_true", help="require a login to MLflow on loopback too"
    )
    return parser


def _print_how_to_use(info: ServiceInfo) -> None:
    print(f"Optuna storage:  {info.storage_url}")
    print(f"MLflow tracking: {info.tracking_url}" + ("  (login required)" if info.auth else ""))
    print("Before a worker, load the credentials:")
    print(f"  source {info.env_file}")
    print(f"  make worker STORAGE={info.storage_url} TRACKING={info.tracking_url}")


def _start(args: argparse.Namespace) -> int:
    info = start(args.dir, args.host, args.pg_port, args.mlflow_port, args.auth)
    for key, name in _NAMES.items():
        print(f"{name}: {'started' if key in info.started else 'already running'}")
    if info.open_to_network:
        print(
            f"NOTE: PostgreSQL (port {args.pg_port}) and MLflow (port {args.mlflow_port}) are "
            f"now open to other hosts on {args.host}, with a password (SCRAM) and a login. "
            f"Workers elsewhere need copies of {info.dir / 'pgpass'} (mode 0600) and "
            f"{info.env_file}, with PGPASSFILE pointing at their copy of pgpass."
        )
    _print_how_to_use(info)
    return 0


def _status(args: argparse.Namespace) -> int:
    state = status(args.dir)
    running = {"postgres": state.postgres_running, "mlflow": state.mlflow_running}
    for key, name in _NAMES.items():
        print(f"{name}: {'running' if running[key] else 'stopped'}")
    if state.info is None:
        print(f"never started in {state.dir}: python -m hpo.services start --dir {state.dir}")
    else:
        _print_how_to_use(state.info)
    # Like `pg_ctl status`: 0 when everything runs, 3 otherwise.
    return 0 if all(running.values()) else 3


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.action == "start":
            return _start(args)
        if args.action == "stop":
            stopped = stop(args.dir)
            for key, name in _NAMES.items():
                print(f"{name}: {'stopped' if key in stopped else 'was not running'}")
            print(f"data kept in {args.dir.resolve()}")
            return 0
        return _status(args)
    except (ServiceError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
