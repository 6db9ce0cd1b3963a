"""`conf/tracking/`: its schema (`TrackingConf`) and the settings a run reads (`TrackingSettings`).

Plain (no MLflow import): the schema is the structured config of the `tracking` group
(`hpo.schema`), which Hydra loads before any run starts. The two differ in one field: a
config holds the URI as a string (OmegaConf holds no custom types), the settings hold it as
a `SecretUrl`, made once in `from_config`, so everything that logs, tags or writes the URI
shows it without its password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from hpo.urls import SecretUrl


# Not frozen: OmegaConf makes a frozen dataclass's config node read-only, and Hydra must
# merge the YAML values and overrides into this schema.
@dataclass
class TrackingConf:
    """`conf/tracking/`'s keys and types: where runs go and what they record."""

    enabled: bool = True
    uri: str = ""
    experiment: str = "fashion-mnist"
    artifact_location: str | None = None
    run_name: str | None = None
    log_checkpoint: bool = True
    log_figures: bool = True


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs go and what they record, with the URI as a `SecretUrl` (see `TrackingConf`).

    A plain string given as `uri` is made a `SecretUrl` at once.
    """

    enabled: bool = True
    uri: SecretUrl = field(default_factory=lambda: SecretUrl(""))
    experiment: str = "fashion-mnist"
    artifact_location: str | None = None
    run_name: str | None = None
    log_checkpoint: bool = True
    log_figures: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.uri, SecretUrl):
            object.__setattr__(self, "uri", SecretUrl(self.uri))

    @classmethod
    def from_config(cls, node: Any) -> TrackingSettings:
        """From the `tracking` node of a composed config (interpolations resolved)."""
        return cls(**OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
