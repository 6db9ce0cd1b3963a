"""Local services for searches that span processes or machines: PostgreSQL and MLflow.

`make services` (= `python -m hpo.services start`) runs, from a state folder (default
`<project>/.services/`), a private PostgreSQL cluster holding two databases, `optuna` (the
study storage) and `mlflow` (the tracking store), and an `mlflow server` on top of the
second, serving artifacts from the folder. Nothing is made by hand: the cluster, the
`fmnist` role, its generated password, the databases, Optuna's schema and the server all
come from `start`, which reuses whatever already runs. `make services-stop` stops both and
keeps the data.

Credentials never appear in a URL, a process list or a log. The role's password lives in
`<dir>/pgpass` (libpq's password file, found through PGPASSFILE); with auth, the MLflow
login lives in `<dir>/env` as MLFLOW_TRACKING_USERNAME/PASSWORD; both are mode 0600. Bound
beyond loopback (`--host 0.0.0.0` or an address), PostgreSQL accepts any address with SCRAM
and MLflow asks for a login.

Python API (what tests and other code use)::

    from hpo.services import ServiceError, ServiceInfo, start, status, stop

    info: ServiceInfo = start(dir, host="127.0.0.1", pg_port=5433, mlflow_port=5000,
                              auth=False, timeout=60.0)
    info.storage_url    # postgresql+psycopg://fmnist@127.0.0.1:5433/optuna
    info.tracking_url   # http://127.0.0.1:5000
    info.env            # {"PGPASSFILE": ...} (+ MLFLOW_TRACKING_USERNAME/PASSWORD with auth):
                        # merge into a worker's environment
    info.started        # ("postgres", "mlflow"), or () when both were already running
    stop(dir)           # -> the services it stopped, e.g. ("mlflow", "postgres")
    status(dir)         # -> ServiceStatus(postgres_running, mlflow_running, info)

Modules: `lifecycle` (start/stop/status), `postgres` (the cluster), `mlflow_server` (the
server process), `optuna_schema`, `credentials` (passwords, 0600 files), `processes`
(detached process groups), `network` (addresses and URLs), `layout` (the state folder),
`errors`. Imports: the standard library, `optuna`, and `hpo.paths`; never `mlflow` (the
server runs as the venv's `mlflow` executable) nor the training, tracking, sweep or retest
rooms.
"""

from hpo.services.errors import ServiceError
from hpo.services.layout import DEFAULT_DIR
from hpo.services.lifecycle import ServiceInfo, ServiceStatus, start, status, stop

__all__ = ["DEFAULT_DIR", "ServiceError", "ServiceInfo", "ServiceStatus", "start", "status", "stop"]
