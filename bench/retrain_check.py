"""Is the final retrain's recipe sound? Validation only: the test set is not read.

`make best-eval ... ARGS="retrain=true"` trains the best trial's config again, from scratch,
on all 60k training images and tests its final weights once. Before trusting that, this
trains the same config on the 50k train split with other seeds and scores each epoch on the
validation split, against the trial's own validation accuracy (its best epoch's, which is
what the search chose on). A final-epoch accuracy close to the trial's (within the split's
noise, about 0.2 points at 95%) says the recipe does not depend on the trial's lucky seed
or on picking the best epoch.

    .venv/bin/python bench/retrain_check.py --study fmnist-accuracy [--seeds 43 44]
        [--storage sqlite:///optuna.db] [--tracking-uri sqlite:///mlflow.db] [--epochs N]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from report import publish
from rich.console import Console
from rich.table import Table

from hpo.paths import PROJECT_ROOT
from hpo.retest.best_eval import retrain
from hpo.retest.best_trial import choose_trial, load_record, load_study
from hpo.tracking.settings import TrackingSettings
from hpo.training.devices import configure_threads, resolve_device
from hpo.training.precision import resolve_precision
from hpo.urls import SecretUrl

log = logging.getLogger("bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", default=f"sqlite:///{PROJECT_ROOT}/optuna.db")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{PROJECT_ROOT}/mlflow.db")
    parser.add_argument("--seeds", type=int, nargs="+", default=[43])
    parser.add_argument("--epochs", type=int, default=None, help="default: the trial's own")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> dict[str, Any]:
    study = load_study(args.study, SecretUrl(args.storage))
    trial = choose_trial(study)
    settings = TrackingSettings(uri=SecretUrl(args.tracking_uri))
    record = load_record(settings, args.study, trial)
    device = resolve_device("auto")
    configure_threads(None)
    precision = resolve_precision(str(record.config.trainer.precision), device)
    runs = []
    for seed in args.seeds:
        started = time.perf_counter()
        _, result = retrain(
            record,
            epochs=args.epochs,
            device=device,
            precision=precision,
            validate=True,
            seed=seed,
        )
        accuracies = [h["val/acc"] for h in result.history]
        runs.append(
            {
                "seed": seed,
                "final_val_acc": accuracies[-1],
                "best_val_acc": max(accuracies),
                "best_epoch": result.best_epoch,
                "epochs": len(accuracies),
                "seconds": time.perf_counter() - started,
            }
        )
    return {
        "study": args.study,
        "trial": trial.number,
        "params": trial.params,
        "trial_seed": int(record.config.seed),
        "trial_val_acc": trial.value,
        "retrains": runs,
    }


def render(summary: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"Retrain check: study {summary['study']}, trial {summary['trial']} "
        f"(seed {summary['trial_seed']}, validation {summary['trial_val_acc']:.2%})"
    )
    for column in ("seed", "final epoch val", "best epoch val", "vs trial", "wall"):
        table.add_column(column)
    for run in summary["retrains"]:
        table.add_row(
            str(run["seed"]),
            f"{run['final_val_acc']:.2%}",
            f"{run['best_val_acc']:.2%} (epoch {run['best_epoch']})",
            f"{(run['final_val_acc'] - summary['trial_val_acc']) * 100:+.2f} points",
            f"{run['seconds'] / 60:.1f} min",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    publish(check(args), render, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
