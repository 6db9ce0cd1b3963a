"""Puts this plugin's config folder (`hydra/sweeper/optuna.yaml`) on Hydra's search path."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class FmnistHpoSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # Appended: an app's own conf/hydra/sweeper/optuna.yaml comes first and wins.
        search_path.append(
            provider="fmnist-hpo", path="pkg://hydra_plugins.fmnist_hpo_sweeper.conf"
        )
