"""Train one CNN on Fashion-MNIST: `python train.py [group=option] [key=value ...]`.

Hydra composes `conf/`; this file tells the story top to bottom: check the config, build
data, model and optimizer, fit, record in MLflow, return the objective so a sweeper
(`python train.py -m hydra/sweeper=optuna`) can optimise it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hpo import builders
from hpo.config_checks import check_config, explain_unknown_overrides
from hpo.errors import exit_on_user_error
from hpo.schema import register_configs
from hpo.sweep.trial_link import LINK_KEY, TrialLink, TrialPruned, TrialReporter
from hpo.tracking import recording
from hpo.tracking.runs import TrackedRun, open_run
from hpo.tracking.settings import TrackingSettings
from hpo.training.allocator import keep_freed_memory
from hpo.training.devices import configure_threads, resolve_device
from hpo.training.loop import EpochCallback, fit
from hpo.training.precision import resolve_precision
from hpo.training.seeding import seed_everything
from models import count_parameters

log = logging.getLogger("train")
# Before Hydra composes conf/ (also in joblib workers, which import this module).
register_configs()

# An absolute config path: the same whether train.py runs as a script or is imported (tests).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def train(cfg: DictConfig, overrides: tuple[str, ...] = ()) -> float | list[float]:
    """Train the model `cfg` describes; return its objective value(s) at the best epoch.

    Inside a sweep (`cfg.hpo` set by the sweeper) each epoch's objective is reported to the
    trial, and a pruned trial stops with `TrialPruned`.
    """
    objectives = check_config(cfg)
    link = TrialLink.from_config(cfg)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.trainer.device)
    precision = resolve_precision(cfg.trainer.precision, device)
    configure_threads(cfg.trainer.num_threads, workers=link.workers if link else 1)
    keep_freed_memory()

    log.info("Loading data <%s>", cfg.data._target_)
    splits = builders.splits(cfg)
    train_batches, val_batches = builders.loaders(cfg, splits, device)

    log.info("Building model <%s> on %s (%s)", cfg.model._target_, device, precision.name)
    model = builders.model(cfg, device, splits)
    num_parameters = count_parameters(model)
    optimizer, scheduler, settings = builders.optimization(
        cfg, model, len(train_batches), precision
    )
    tracking = TrackingSettings.from_config(cfg.tracking)
    reporter = TrialReporter(link) if link else None
    monitor = objectives[0] if objectives[0] != "model/params" else "val/acc"
    tags = {**recording.run_tags(device, precision, overrides), "model": cfg.model._target_}

    with open_run(
        tracking,
        run_name=link.run_name if link else None,
        parent_run_id=link.parent_run_id if link else None,
        tags={**tags, **(link.tags if link else {})},
        graceful=(TrialPruned,),
    ) as run:
        log.info("Training %d parameters for %d epochs", num_parameters, settings.epochs)
        if run is not None:
            recording.log_run_start(run, cfg, num_parameters, precision, not_params=(LINK_KEY,))
            if reporter is not None:
                reporter.record_run(run.run_id)
        result = fit(
            model,
            train_batches,
            val_batches,
            optimizer=optimizer,
            scheduler=scheduler,
            settings=settings,
            monitor=monitor,
            on_epoch_end=_epoch_callback(run, reporter, monitor),
        )
        model.load_state_dict(result.best_state)
        log.info("Best epoch %d: %s", result.best_epoch, result.best_metrics)
        if run is not None:
            recording.log_training_end(
                run,
                tracking,
                result,
                model,
                splits,
                val_batches,
                num_parameters,
                tta=settings.tta,
                tta_translate=settings.tta_translate,
            )
    return builders.objective_values(objectives, result.best_metrics, num_parameters)


def _epoch_callback(
    run: TrackedRun | None, reporter: TrialReporter | None, monitor: str
) -> EpochCallback:
    """Log each epoch to MLflow and report it to the trial (which may prune it)."""

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        if run is not None:
            recording.log_epoch(run, epoch, metrics)
        if reporter is not None:
            reporter.report(epoch, metrics[monitor])

    return on_epoch_end


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | list[float]:
    hydra_cfg = HydraConfig.get()
    overrides = tuple(o for o in hydra_cfg.overrides.task if not TrialLink.is_override(o))
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return train(cfg, overrides)  # the sweeper records a failed trial with its message
    with exit_on_user_error(log):  # a user error: its message and exit code, no traceback
        return train(cfg, overrides)


if __name__ == "__main__":
    with explain_unknown_overrides(CONFIG_DIR, sys.argv[1:]):
        main()
