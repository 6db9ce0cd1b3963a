"""OmegaConf resolvers the YAML config uses (`${project_root:}`, `${study_name:...}`)."""

from __future__ import annotations

from omegaconf import OmegaConf

from hpo.paths import PROJECT_ROOT

# The dataset the searches are named after; a study on any other data gets a suffix.
REAL_DATA_TARGET = "data.FashionMNISTData"


def study_name(base: str, data_target: str) -> str:
    """`base` for a search on the real Fashion-MNIST, `base-<data>` on other data.

    So a debug search (`debug=tiny`: synthetic data) never adds its trials to the real
    study of the same experiment, whose budget and best trial they would take:
    `fmnist-quick` becomes `fmnist-quick-synthetic`.
    """
    if data_target == REAL_DATA_TARGET:
        return base
    name = data_target.rsplit(".", 1)[-1].removesuffix("Data").lower()
    return f"{base}-{name or 'data'}"


def register_resolvers() -> None:
    """Register the resolvers; safe to call more than once."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("study_name"):
        OmegaConf.register_new_resolver("study_name", study_name)
