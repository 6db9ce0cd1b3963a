"""Shared fixtures: Hydra configs from conf/, shrunk by `debug=tiny` to runs in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from hpo.schema import register_configs

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

ComposeFn = Callable[..., DictConfig]


@pytest.fixture
def compose_cfg(tmp_path: Path) -> ComposeFn:
    """Compose conf/ with `debug=tiny` (conf/debug/tiny.yaml) and a tmp_path MLflow store."""
    register_configs()

    def _compose(*overrides: str, tiny: bool = True) -> DictConfig:
        base = ["debug=tiny", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=[*(base if tiny else []), *overrides])

    return _compose
