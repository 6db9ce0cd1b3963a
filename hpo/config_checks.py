"""Check a composed config before any data is loaded or any epoch runs.

Hydra already rejects unknown group options (`optimizer=adagrad`), and the schemas of
`hpo.schema` make it reject unknown keys and wrong types of the root, `trainer` and
`tracking` while composing. What Hydra lets through: `+key=value` additions (they bypass
a schema), the keys a `_target_` accepts (a `+model.widht=64` would otherwise die deep
inside instantiate), and values that make no sense (a negative learning rate trains
happily into NaN). Every problem is collected and reported at once, with the allowed keys
and the closest one.
"""

from __future__ import annotations

import difflib
import inspect
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from hpo.errors import UsageError
from hpo.schema import RootConf, TrainerConf
from hpo.tracking.settings import TrackingConf
from hpo.training.devices import DEVICE_CHOICES, resolve_device
from hpo.training.objectives import parse_objective
from hpo.training.precision import PRECISION_CHOICES, resolve_precision

TARGET_GROUPS = ("data", "model", "optimizer", "scheduler", "augmentation")
# Nodes whose keys a schema fixes: (prefix, node name or None for the root, schema).
SCHEMA_NODES: tuple[tuple[str | None, type], ...] = (
    (None, RootConf),
    ("trainer", TrainerConf),
    ("tracking", TrackingConf),
)
# Arguments the trainer passes itself; users never set them.
PROVIDED_BY_TRAINER = {"params", "optimizer", "total_steps"}


Rule = tuple[Callable[[Any], bool], str]
# What Hydra's "Could not override 'model.widht'. To append to your config use
# +model.widht=3" leaves out: a misspelt key needs its right name, not a `+`.
PLUS_IS_NOT_THE_FIX = (
    "(Hydra's `+key=value` would add the key as a new one, which the checks then reject: "
    "fix its name instead)"
)


class ConfigError(UsageError, ValueError):
    """One or more settings are wrong; the message lists each with its fix."""


def _between(low: float, high: float, *, low_open: bool = False, high_open: bool = True) -> Rule:
    def check(v: Any) -> bool:
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    text = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return check, f"a number in {text}"


_POSITIVE: Rule = (lambda v: v > 0, "a number > 0")
_NON_NEGATIVE: Rule = (lambda v: v >= 0, "a number >= 0")
# Types come from hpo.schema; these rules add the ranges.
_POSITIVE_INT: Rule = (lambda v: v >= 1, "an integer >= 1")
_OPTIONAL_POSITIVE_INT: Rule = (lambda v: v is None or v >= 1, "null or an integer >= 1")
VALUE_RULES: dict[str, Rule] = {
    "optimizer.lr": _POSITIVE,
    "optimizer.weight_decay": _NON_NEGATIVE,
    "optimizer.momentum": _between(0.0, 1.0),
    "model.dropout": _between(0.0, 1.0),
    "trainer.epochs": _POSITIVE_INT,
    "trainer.batch_size": _POSITIVE_INT,
    "trainer.eval_batch_size": _POSITIVE_INT,
    "trainer.label_smoothing": _between(0.0, 1.0),
    "trainer.patience": _OPTIONAL_POSITIVE_INT,
    "trainer.num_threads": _OPTIONAL_POSITIVE_INT,
    "trainer.grad_clip": (lambda v: v is None or v > 0, "null or a number > 0"),
    "trainer.ema": (
        lambda v: v is None or 0 < v < 1,
        "null (off) or a decay in (0, 1), e.g. 0.999",
    ),
    "trainer.ema_warmup_epochs": (lambda v: v >= 0, "an integer >= 0"),
    "trainer.norm_bias_lr_scale": (
        lambda v: math.isfinite(v) and v > 0,
        "a number > 0 (1 = the optimizer's lr; airbench: 64)",
    ),
    "trainer.precision": (
        lambda v: v in PRECISION_CHOICES,
        f"one of {', '.join(PRECISION_CHOICES)}",
    ),
    "trainer.device": (
        lambda v: isinstance(v, str) and v.split(":")[0] in DEVICE_CHOICES,
        f"one of {', '.join(DEVICE_CHOICES)} (cuda:N for a given GPU)",
    ),
    "scheduler.warmup_fraction": _between(0.0, 1.0),
    "scheduler.start_factor": _between(0.0, 1.0, low_open=True, high_open=False),
    "seed": (lambda v: v >= 0, "an integer >= 0"),
}


def check_config(cfg: DictConfig) -> tuple[str, ...]:
    """Validate `cfg` and return the parsed objective metric names.

    Raises:
        ConfigError: listing every wrong key or value with what is allowed.
    """
    problems = list(_unknown_keys(cfg))
    problems += _bad_values(cfg)
    objectives: tuple[str, ...] = ()
    objective = cfg.get("objective", "val/acc")
    if isinstance(objective, ListConfig):
        objective = [str(o) for o in objective]
    try:
        objectives = parse_objective(objective)
    except ValueError as exc:
        problems.append(str(exc))
    if not problems:
        problems += _hardware_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return objectives


def _hardware_problems(cfg: DictConfig) -> list[str]:
    """Settings valid in general that this machine cannot run (cuda here, fp16 on a CPU)."""
    try:
        resolve_precision(cfg.trainer.precision, resolve_device(cfg.trainer.device))
    except ValueError as exc:
        return [str(exc)]
    return []


def _unknown_keys(cfg: DictConfig) -> Iterable[str]:
    for group, schema in SCHEMA_NODES:
        node = cfg if group is None else cfg.get(group)
        if isinstance(node, DictConfig):
            allowed = [f.name for f in fields(schema)]
            yield from _unexpected(f"{group}." if group else "", node.keys(), allowed)
    for group in TARGET_GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            yield from _unexpected_for_target(group, node)


def _unexpected_for_target(group: str, node: DictConfig) -> Iterable[str]:
    target = node.get("_target_")
    if target is None:
        yield f"{group} has no _target_; pick an option of conf/{group}/"
        return
    try:
        parameters = inspect.signature(get_object(str(target))).parameters
    except Exception as exc:
        yield f"{group}._target_={target} cannot be imported: {exc}"
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    allowed = [p for p in parameters if p not in PROVIDED_BY_TRAINER]
    keys = [k for k in node if not str(k).startswith("_")]
    yield from _unexpected(f"{group}.", keys, allowed, owner=str(target))


def _unexpected(
    prefix: str, keys: Iterable[Any], allowed: Iterable[str], owner: str | None = None
) -> Iterable[str]:
    allowed = list(allowed)
    for key in keys:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"; did you mean {prefix}{close[0]}?" if close else ""
        where = f"a setting of {owner}" if owner else "a known setting"
        yield f"{prefix}{key} is not {where} (allowed: {', '.join(allowed)}){hint}"


def _bad_values(cfg: DictConfig) -> list[str]:
    problems = []
    for key, (ok, allowed) in VALUE_RULES.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None and key.startswith(("optimizer.", "model.", "scheduler.")):
            continue  # the chosen option has no such setting (e.g. adam has no momentum)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        try:
            valid = ok(value) if (is_number or value is None or isinstance(value, str)) else False
        except TypeError:
            valid = False
        if not valid:
            problems.append(f"{key}={value!r} is invalid: expected {allowed}")
    return problems


@contextmanager
def explain_unknown_overrides(config_dir: str, args: Sequence[str]) -> Iterator[None]:
    """Around `@hydra.main`: when Hydra stops (exit 1) on a `key=value` whose key is not in
    the config, say which key is closest, and exit 2 (a usage error).

    Hydra's own message suggests `+key=value`, right for a new key and wrong for a typo;
    anything else that exits 1 (a run error) passes unchanged.
    """
    try:
        yield
    except SystemExit as exc:
        if exc.code != 1:
            raise
        problems = unknown_override_problems(config_dir, args)
        if not problems:
            raise
        lines = "\n".join(f"  - {problem}" for problem in problems)
        print(f"invalid config:\n{lines}\n{PLUS_IS_NOT_THE_FIX}", file=sys.stderr)
        raise SystemExit(ConfigError.exit_code) from None


def unknown_override_problems(config_dir: str, args: Sequence[str]) -> list[str]:
    """For each `a.b=value` among the command-line `args` whose key the config composed
    from the others lacks: what is wrong and the closest key. Empty when the config
    cannot be composed without them (another problem, which Hydra reports)."""
    parser = OverridesParser.create()
    try:
        overrides = parser.parse_overrides([a for a in args if not a.startswith("-")])
    except Exception:
        return []
    changes = [o for o in overrides if o.type == OverrideType.CHANGE and "." in o.key_or_group]
    rest = [o.input_line for o in overrides if o not in changes and o.input_line]
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose("config", overrides=rest)
    except Exception:
        return []
    problems = []
    for override in changes:
        key = override.key_or_group
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent)
        if not isinstance(node, DictConfig) or leaf in node:
            continue
        known = [str(k) for k in node if not str(k).startswith("_")]
        close = difflib.get_close_matches(leaf, known, n=1)
        hint = f"; did you mean {parent}.{close[0]}?" if close else ""
        problems.append(f"{key} is not a key of {parent} (its keys: {', '.join(known)}){hint}")
    return problems
