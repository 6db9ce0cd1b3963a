"""Config schema of the Optuna sweeper (`hydra/sweeper=optuna`) and its option groups.

The keys mirror Hydra's own Optuna sweeper plugin (sampler, direction, storage, study_name,
n_trials, n_jobs, max_failure_rate, params, custom_search_space), so configs written for it
work unchanged; pruner, timeout and load_if_exists are additions. Sampler and pruner
options take only arguments that Optuna 5 accepts. Only dataclasses live here: Hydra
imports this on every start, so Optuna is not imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

SWEEPER_TARGET = "hydra_plugins.fmnist_hpo_sweeper.optuna_sweeper.OptunaSweeper"


@dataclass
class SamplerConfig:
    _target_: str = MISSING
    seed: int | None = None


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    group: bool = False
    # With parallel trials, pending ones count as "bad" so workers do not sample the same point.
    constant_liar: bool = True


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GPSampler"
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    warn_independent_sampling: bool = True


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class GridSamplerConfig(SamplerConfig):
    """The grid is built from `params` (choice/range entries) by the sweeper."""

    _target_: str = "optuna.samplers.GridSampler"


@dataclass
class PrunerConfig:
    _target_: str = MISSING


@dataclass
class NopPrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"  # int or "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConfig(PrunerConfig):
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"  # int or "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class OptunaSweeperConf:
    _target_: str = SWEEPER_TARGET
    # The sweeper builds sampler and pruner itself (the grid sampler needs the parsed space).
    _recursive_: bool = False
    defaults: list[Any] = field(
        default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}, "_self_"]
    )
    sampler: Any = MISSING
    pruner: Any = MISSING
    # "minimize" / "maximize", or a list of them for several objectives.
    direction: Any = "minimize"
    # An Optuna storage URL (sqlite:///..., postgresql+psycopg://user@host/db); null = in
    # memory (no resume). Keep passwords out of it (PGPASSFILE); a URL is shown masked.
    storage: str | None = None
    study_name: str | None = None
    # The study's total of finished (complete or pruned) trials, across all workers of the
    # study: a rerun or another worker runs only the rest.
    n_trials: int = 20
    # Trials running at once (needs a parallel launcher such as hydra/launcher=joblib).
    n_jobs: int = 1
    # Stop when failed trials exceed this share of finished ones (0 = stop at the first).
    max_failure_rate: float = 0.0
    # Search space in Hydra's sweep grammar, e.g. {"model.width": "choice(16, 32)"}.
    params: dict[str, Any] | None = None
    # Dotted path of a function (cfg, trial) -> dict of extra values, for conditional spaces.
    custom_search_space: str | None = None
    # Dotted path of a function (job config) -> objective names (or None) that raises a
    # UsageError for a wrong config. Run once, before any trial, on the config of a job
    # at the first point of the space, so an error every trial would hit (an unknown
    # `+key`, an objective that does not fit `direction`) stops the sweep with its
    # message instead of failing trial 0.
    check_job_config: str | None = None
    # Seconds after which no new trial is started (null = no limit).
    timeout: float | None = None
    # Seconds by which the sweep should end: a run starts only if its expected duration
    # (the mean of finished runs at its budget) fits before it (null = no deadline).
    deadline: float | None = None
    # Multi-fidelity with the budget as a parameter of each run (hpo/sweep/fidelity.py):
    # {key: trainer.epochs, min: 4, max: 20, eta: 3} runs every configuration at the
    # smallest budget and reruns the best 1/eta at each larger one (asynchronously);
    # needs pruner none. null = every trial runs the config as composed.
    fidelity: Any = None
    # Configurations to run first (warm start), e.g. [{optimizer.lr: 0.1}]: enqueued once,
    # when this sweep creates the study; keys are params of the space, values in range.
    enqueue_trials: Any = None
    # Continue a study of the same name in the storage instead of failing.
    load_if_exists: bool = True
    # Liveness on a database storage (SQLite, PostgreSQL): each running trial's worker
    # records a heartbeat every `heartbeat_interval` s; a trial silent for `grace_period` s
    # (its worker was killed or lost) is failed by the next worker to ask for a trial, and
    # its params run again up to `max_retry` times. Sized for trials of minutes: a lost
    # trial is noticed within about 2.5 minutes, and a busy machine never misses 4 beats.
    heartbeat_interval: int = 30
    grace_period: int = 120
    max_retry: int = 2


def register_configs() -> None:
    """Put the sweeper, sampler and pruner schemas in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    provider = "fmnist_hpo_sweeper"
    # Only the schema lives here. `hydra/sweeper=optuna` is a YAML file extending it (the
    # plugin ships one, an app may shadow it): a ConfigStore node of the same name would
    # trigger Hydra's deprecated automatic schema matching.
    cs.store(group="hydra/sweeper", name="optuna_base", node=OptunaSweeperConf, provider=provider)
    samplers = {
        "tpe": TPESamplerConfig,
        "random": RandomSamplerConfig,
        "cmaes": CmaEsSamplerConfig,
        "gp": GPSamplerConfig,
        "qmc": QMCSamplerConfig,
        "nsgaii": NSGAIISamplerConfig,
        "grid": GridSamplerConfig,
    }
    for name, node in samplers.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider=provider)
    pruners = {
        "none": NopPrunerConfig,
        "median": MedianPrunerConfig,
        "percentile": PercentilePrunerConfig,
        "successive_halving": SuccessiveHalvingPrunerConfig,
        "hyperband": HyperbandPrunerConfig,
    }
    for name, node in pruners.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider=provider)
