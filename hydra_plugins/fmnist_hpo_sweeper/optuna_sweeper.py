"""Registration shim for `hydra/sweeper=optuna`: the implementation lives in `hpo.sweep.sweeper`.

Hydra imports every module under the `hydra_plugins` namespace on each start, so this file
imports nothing heavy: Optuna and MLflow load only when a sweep actually runs.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hpo.sweep.config import register_configs

register_configs()


class OptunaSweeper(Sweeper):
    """Hydra sweeper on Optuna 5: pruning, resume, parallel trials, MLflow nesting."""

    def __init__(self, **settings: Any) -> None:
        from hpo.sweep.sweeper import OptunaSweeperImpl

        self._impl = OptunaSweeperImpl(**settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self._impl.sweep(arguments)
