"""`conf/tracking/` as a dataclass: where runs go and what they record.

Plain (no MLflow import): it is also the structured-config schema of the `tracking` group
(`hpo.schema`), which Hydra loads before any run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf


# Not frozen: OmegaConf makes a frozen dataclass's config node read-only, and Hydra must
# merge the YAML values and overrides into this schema.
@dataclass
class TrackingSettings:
    """`conf/tracking/`: where runs go and what they record."""

    enabled: bool = True
    uri: str = ""
    experiment: str = "fashion-mnist"
    artifact_location: str | None = None
    run_name: str | None = None
    log_checkpoint: bool = True
    log_figures: bool = True

    @classmethod
    def from_config(cls, node: Any) -> TrackingSettings:
        """From the `tracking` node of a composed config (interpolations resolved)."""
        return cls(**OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
