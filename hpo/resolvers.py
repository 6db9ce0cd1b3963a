"""OmegaConf resolvers the YAML config uses (`${project_root:}`)."""

from __future__ import annotations

from omegaconf import OmegaConf

from hpo.paths import PROJECT_ROOT


def register_resolvers() -> None:
    """Register `${project_root:}`; safe to call more than once."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
