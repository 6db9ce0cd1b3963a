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
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any

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
