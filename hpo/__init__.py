"""The search: training loop, config checks, MLflow tracking and the Optuna sweeper.

Kept import-light on purpose: Hydra imports the sweeper shim (and so this package) on
every start. Importing it registers the `${project_root:}` resolver the YAML config uses,
so configs resolve in any process that runs a job (joblib workers included).
"""

from hpo.resolvers import register_resolvers

register_resolvers()
