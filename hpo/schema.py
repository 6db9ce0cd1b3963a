"""Structured-config schemas: the keys and types of the root config, `trainer/` and `tracking/`.

Registered in Hydra's ConfigStore and extended by the YAML files (`defaults: [base_...]`),
so Hydra itself rejects an unknown key or a wrong type while composing
(`trainer.epochs=abc`, a typo in a YAML option). The values live in the YAML files; the
schemas hold only the shape. `hpo.config_checks` derives its allowed keys from these
dataclasses for what Hydra lets through (`+key=value` additions) and checks value ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from hpo.resolvers import register_resolvers
from hpo.tracking.settings import TrackingConf


@dataclass
class TrainerConf:
    """`conf/trainer/`: the loop settings plus how batches are made and where they run."""

    epochs: int = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    label_smoothing: float = MISSING
    patience: int | None = MISSING
    grad_clip: float | None = MISSING
    device: str = MISSING
    precision: str = MISSING
    num_threads: int | None = MISSING
    channels_last: bool = MISSING
    progress: bool = MISSING
    ema: float | None = MISSING
    ema_warmup_epochs: int = MISSING
    tta: bool = MISSING
    tta_translate: int = MISSING
    no_decay_norm_bias: bool = MISSING
    norm_bias_lr_scale: float = MISSING


@dataclass
class RootConf:
    """`conf/config.yaml`: one node per config group plus the run-wide settings."""

    # The `_target_` groups: their keys are checked against each target's signature.
    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    augmentation: Any = MISSING
    # Typed by their own schemas (base_trainer, base_tracking: root configs, not group options,
    # so `--help` does not list them as choices), which their YAML extends.
    trainer: Any = MISSING
    tracking: Any = MISSING
    seed: int = MISSING
    # A metric name or a list of them (checked by hpo.training.objectives).
    objective: Any = MISSING
    # Set by the Optuna sweeper for each trial (a TrialLink); null when train.py runs on its
    # own. Typed as Any because OmegaConf 2.3 cannot merge a mapping into an Optional
    # dataclass node that is null; TrialLink.from_config checks it against the dataclass.
    hpo: Any = None


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore and register the YAML's resolvers.

    Call before Hydra composes `conf/` (train.py and best-eval do it on import).
    """
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RootConf)
    cs.store(name="base_trainer", node=TrainerConf)
    cs.store(name="base_tracking", node=TrackingConf)
