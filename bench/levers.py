"""Recipe levers at equal time: each arm is a set of overrides on an experiment, trained once
per seed as `python train.py` would, scored on the validation split. The test set is not read.

    .venv/bin/python bench/levers.py --epochs 7 --seeds 42 43 \\
        --arm base --arm ema trainer.ema=0.99 --arm identity model.identity_init=true \\
        --arm w48 "model.widths=[48,192,192]" trainer.epochs=12 \\
        [--experiment accuracy] [--json bench/results/levers.json]

The first arm is the reference: every other arm's difference is taken seed by seed against it
(the same seed means the same split, batch order and augmentation draws, so the pairs share
part of their noise). An arm trades time for accuracy when its own overrides change the epochs
or the net: the table shows each arm's wall time so "at equal time" can be checked, not
assumed. With `--json`, results are kept after every run and an (arm, seed) already in the file
is not trained again, so an interrupted comparison resumes and a last call with every arm only
prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from cli_types import positive_int
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from hpo.paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT))  # train.py is a script at the root, not in a package
import train

log = logging.getLogger("bench")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--arm",
        action="append",
        nargs="+",
        required=True,
        metavar=("NAME", "OVERRIDE"),
        help="a name, then its Hydra overrides (none for the reference); repeat per arm",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--epochs", type=positive_int, default=7, help="unless an arm sets them")
    parser.add_argument("--experiment", default="accuracy")
    parser.add_argument("--json", type=Path, default=None, help="keep the results here")
    args = parser.parse_args(argv)
    names = [arm[0] for arm in args.arm]
    if len(set(names)) != len(names):
        parser.error(f"arm names must differ, got {names}")
    return args


def run_arm(experiment: str, epochs: int, seed: int, overrides: list[str]) -> dict[str, Any]:
    """Train one arm at one seed, as train.py does, without MLflow; its validation result."""
    base = [
        f"experiment={experiment}",
        "tracking=none",
        "trainer.progress=false",
        f"trainer.epochs={epochs}",
        f"seed={seed}",
    ]
    with initialize_config_dir(config_dir=train.CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*base, *overrides])
    started = time.perf_counter()
    value = train.train(cfg)
    wall = time.perf_counter() - started
    return {
        "seed": seed,
        "overrides": overrides,
        "epochs": int(cfg.trainer.epochs),
        "objective": str(cfg.objective),
        "val": float(value if isinstance(value, float) else value[0]),
        "wall_s": round(wall, 1),
    }


def keep(path: Path, experiment: str, name: str, seed: int, result: dict[str, Any]) -> None:
    """Add one result to the JSON file, re-read first: another process may have added some."""
    runs = json.loads(path.read_text())["runs"] if path.exists() else {}
    runs.setdefault(name, {})[str(seed)] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"experiment": experiment, "runs": runs}, indent=2) + "\n")


def summarise(arms: list[list[str]], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per arm: its values by seed, their mean, and the paired difference from the first arm."""
    reference = results.get(arms[0][0], {})
    rows = []
    for name, *_ in arms:
        runs = results.get(name, {})
        seeds = sorted(runs, key=int)
        walls = [runs[s]["wall_s"] for s in seeds]
        diffs = [runs[s]["val"] - reference[s]["val"] for s in seeds if s in reference]
        rows.append(
            {
                "arm": name,
                "overrides": runs[seeds[0]]["overrides"] if seeds else [],
                "epochs": runs[seeds[0]]["epochs"] if seeds else None,
                "val_by_seed": {s: runs[s]["val"] for s in seeds},
                "val_mean": statistics.fmean(runs[s]["val"] for s in seeds) if seeds else None,
                "diff_mean": statistics.fmean(diffs) if diffs else None,
                "wall_s_mean": statistics.fmean(walls) if walls else None,
            }
        )
    return rows


def render(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Recipe levers on the validation split (paired by seed with the first arm)")
    for column in ("arm", "overrides", "epochs", "validation by seed", "mean", "vs first", "wall"):
        table.add_column(column)
    for row in rows:
        by_seed = " ".join(f"{s}:{v:.2%}" for s, v in row["val_by_seed"].items())
        diff = row["diff_mean"]
        table.add_row(
            row["arm"],
            " ".join(row["overrides"]) or "-",
            str(row["epochs"]),
            by_seed or "not run",
            f"{row['val_mean']:.2%}" if row["val_mean"] is not None else "-",
            f"{diff * 100:+.2f} pts" if diff is not None and row is not rows[0] else "",
            f"{row['wall_s_mean'] / 60:.1f} min" if row["wall_s_mean"] is not None else "-",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    # {arm: {seed (str, as JSON keys are): result}}
    results: dict[str, dict[str, Any]] = {}
    if args.json is not None and args.json.exists():
        kept = json.loads(args.json.read_text())
        if kept["experiment"] != args.experiment:
            sys.exit(
                f"{args.json} holds runs of experiment={kept['experiment']}, not "
                f"{args.experiment}: use another --json"
            )
        results = kept["runs"]
    for name, *overrides in args.arm:
        for seed in args.seeds:
            done = results.get(name, {}).get(str(seed))
            if done is not None:
                if done["overrides"] != overrides:
                    sys.exit(
                        f"{args.json} holds arm {name!r} with overrides {done['overrides']}, "
                        f"not {overrides}: give this arm another name or another --json"
                    )
                continue
            log.info("arm %s, seed %d: %s", name, seed, " ".join(overrides) or "(reference)")
            result = run_arm(args.experiment, args.epochs, seed, overrides)
            results.setdefault(name, {})[str(seed)] = result
            if args.json is not None:
                keep(args.json, args.experiment, name, seed, result)
    rows = summarise(args.arm, results)
    render(rows, Console() if sys.stdout.isatty() else Console(width=140))


if __name__ == "__main__":
    main()
