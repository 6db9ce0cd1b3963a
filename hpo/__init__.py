"""The search: training loop, config checks, MLflow tracking and (later) the Optuna sweeper.

Kept import-light on purpose: Hydra imports the sweeper shim on every start.
"""
