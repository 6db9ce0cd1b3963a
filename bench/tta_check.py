"""Which test-time views help? Validation only, on trained trials: nothing is trained.

For the best top-budget trials of a study, rebuilds each trial's model with its best-epoch
weights from MLflow (as `make best-eval` does) and scores the validation split with each
set of views: the image alone, with its mirror image (`trainer.tta`), and with the mirror
and the images shifted by one pixel (`trainer.tta_translate=1`, airbench's multi-view TTA,
six forward passes). It does the same for the best 2, 3, ... trials averaged (best-eval's
`ensemble`, whose members are independently trained nets of nearby configurations).
The comparison is paired (the same images, the same weights), so besides each accuracy it
counts the images that each extra view set turns from wrong to right and from right to
wrong: a gain much smaller than those counts is noise.

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
from report import publish
from rich.console import Console
from rich.table import Table

from hpo import builders
from hpo.paths import PROJECT_ROOT
from hpo.retest.best_eval import ensemble, rebuild
from hpo.retest.best_trial import load_record, load_study, ranked_trials
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
    trials = ranked_trials(study, args.trials)
    settings = TrackingSettings(uri=SecretUrl(args.tracking_uri))
    device = resolve_device("auto")
    configure_threads(None)
    records = [load_record(settings, study.study_name, trial) for trial in trials]
    # Every trial of a study shares the split (data.split_seed) and its statistics.
    splits = builders.splits(records[0].config)
    batches = splits.val_loader(
        batch_size=1000, device=device, channels_last=bool(records[0].config.trainer.channels_last)
    )
    # Each model under its trial's own autocast; an average under its best member's.
    rebuilt = [
        rebuild(r, device, resolve_precision(str(r.config.trainer.precision), device))
        for r in records
    ]
    # Each trial alone, then the best k averaged (best-eval's ensemble=k without retrain).
    model_sets = [[i] for i in range(len(records))]
    model_sets += [list(range(k)) for k in range(2, len(records) + 1)]
    results = []
    for indices in model_sets:
        combined = ensemble([rebuilt[i] for i in indices])
        model, precision = combined.model, combined.precision
        correct: dict[str, torch.Tensor] = {}
        seconds: dict[str, float] = {}
        for view, flip, shift in VIEWS:
            started = time.perf_counter()
            logits, labels = predict(FlipTTA(model, shift) if flip else model, batches, precision)
            seconds[view] = time.perf_counter() - started
            correct[view] = logits.argmax(1) == labels
        base = correct["none"]
        results.append(
            {
                "models": f"trial {trials[indices[0]].number}"
                if len(indices) == 1
                else f"best {len(indices)} averaged",
                "trials": [trials[i].number for i in indices],
                # The search's value of the set's best trial.
                "searched_val_acc": trials[indices[0]].value,
                "images": len(base),
                "views": {
                    view: {
                        "val_acc": correct[view].float().mean().item(),
                        "fixed": int((correct[view] & ~base).sum()),
                        "broken": int((~correct[view] & base).sum()),
                        "seconds": seconds[view],
                    }
                    for view, _, _ in VIEWS
                },
            }
        )
    return {"study": study.study_name, "results": results, "views": [v[0] for v in VIEWS]}


def render(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Test-time views on validation, study {summary['study']}")
    for column in ("models", "as searched (best)", *summary["views"]):
        table.add_column(column, justify="right")
    for result in summary["results"]:
        cells = []
        for name in summary["views"]:
            view = result["views"][name]
            cells.append(
                f"{view['val_acc']:.2%} (+{view['fixed']}/-{view['broken']}, "
                f"{view['seconds']:.1f} s)"
            )
        table.add_row(result["models"], f"{result['searched_val_acc']:.2%}", *cells)
    console.print(table)
    console.print("(+fixed/-broken: images a view set turns right/wrong against no views)")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    publish(check(args), render, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
