"""Which test-time views help? Validation only, on trained trials: nothing is trained.

For the best top-budget trials of a study, rebuilds each trial's model with its best-epoch
weights from MLflow (as `make best-eval` does) and scores the validation split with each
set of views: the image alone, with its mirror image (`trainer.tta`), and with the mirror
and the images shifted by one pixel (`trainer.tta_translate=1`, airbench's multi-view TTA,
six forward passes). The comparison is paired (the same images, the same weights), so
besides each accuracy it counts the images that each extra view set turns from wrong to
right and from right to wrong: a gain much smaller than those counts is noise.

    .venv/bin/python bench/tta_check.py --study fmnist-accuracy [--trials 3]
        [--storage sqlite:///optuna.db] [--tracking-uri sqlite:///mlflow.db] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch
from cli_types import positive_int
from optuna.trial import TrialState
from report import publish
from rich.console import Console
from rich.table import Table

from hpo import builders
from hpo.paths import PROJECT_ROOT
from hpo.retest.best_eval import rebuild
from hpo.retest.best_trial import load_record, load_study
from hpo.tracking.settings import TrackingSettings
from hpo.training.devices import configure_threads, resolve_device
from hpo.training.loop import predict
from hpo.training.precision import resolve_precision
from hpo.urls import SecretUrl
from models import FlipTTA

log = logging.getLogger("bench")

# (name, mirror image, shift in pixels): the views of trainer.tta and trainer.tta_translate.
VIEWS = (("none", False, 0), ("flip", True, 0), ("flip + shift 1", True, 1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--storage", default=f"sqlite:///{PROJECT_ROOT}/optuna.db")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{PROJECT_ROOT}/mlflow.db")
    parser.add_argument("--trials", type=positive_int, default=3, help="the best N trials")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> dict[str, Any]:
    study = load_study(args.study, SecretUrl(args.storage))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = sorted(
        complete, key=lambda t: t.value or 0.0, reverse=study.direction.name == "MAXIMIZE"
    )
    settings = TrackingSettings(uri=SecretUrl(args.tracking_uri))
    device = resolve_device("auto")
    configure_threads(None)
    results = []
    splits = None
    for trial in best[: args.trials]:
        record = load_record(settings, study.study_name, trial)
        precision = resolve_precision(str(record.config.trainer.precision), device)
        retested = rebuild(record, device, precision)
        if splits is None:  # every trial of a study shares the split (data.split_seed)
            splits = builders.splits(record.config)
        batches = splits.val_loader(
            batch_size=1000, device=device, channels_last=bool(record.config.trainer.channels_last)
        )
        correct: dict[str, torch.Tensor] = {}
        seconds: dict[str, float] = {}
        for name, flip, shift in VIEWS:
            model = FlipTTA(retested.model, shift) if flip else retested.model
            started = time.perf_counter()
            logits, labels = predict(model, batches, precision)
            seconds[name] = time.perf_counter() - started
            correct[name] = logits.argmax(1) == labels
        base = correct["none"]
        results.append(
            {
                "trial": trial.number,
                "trial_val_acc": trial.value,
                "images": len(base),
                "views": {
                    name: {
                        "val_acc": correct[name].float().mean().item(),
                        "fixed": int((correct[name] & ~base).sum()),
                        "broken": int((~correct[name] & base).sum()),
                        "seconds": seconds[name],
                    }
                    for name, _, _ in VIEWS
                },
            }
        )
    return {"study": study.study_name, "results": results, "views": [v[0] for v in VIEWS]}


def render(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Test-time views on validation, study {summary['study']}")
    for column in ("trial", "as searched", *summary["views"]):
        table.add_column(column, justify="right")
    for result in summary["results"]:
        cells = []
        for name in summary["views"]:
            view = result["views"][name]
            cells.append(
                f"{view['val_acc']:.2%} (+{view['fixed']}/-{view['broken']}, "
                f"{view['seconds']:.1f} s)"
            )
        table.add_row(str(result["trial"]), f"{result['trial_val_acc']:.2%}", *cells)
    console.print(table)
    console.print("(+fixed/-broken: images a view set turns right/wrong against no views)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    publish(check(args), render, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
