"""Turn a search space written in Hydra's sweep grammar into Optuna 5 distributions.

The sweeper's `params` (`{config.key: "sweep grammar"}`, the upstream Optuna sweeper's format)
and the command-line overrides are parsed with Hydra's own override parser, params first; a
later entry for a key replaces the earlier one entirely. Each surviving entry becomes either an
Optuna distribution (a sampled dimension) or a fixed override string.

| Sweep grammar                                | Optuna 5 distribution                          |
| -------------------------------------------- | ---------------------------------------------- |
| `choice(a, b, ...)`, `a,b,...`, `shuffle(..)`| `CategoricalDistribution([a, b, ...])`         |
| `range(2, 5)` (all ints)                     | `IntDistribution(2, 4, step=1)`: stop excluded |
| `range(0, 10, 3)`                            | `IntDistribution(0, 9, step=3)`                |
| `range(0.1, 0.5, 0.1)` (any float)           | `FloatDistribution(0.1, 0.4, step=0.1)`        |
| `shuffle(range(...))`                        | `CategoricalDistribution` of the range values  |
| `interval(a, b)`                             | `FloatDistribution(a, b)`                      |
| `int(interval(a, b))`                        | `IntDistribution(a, b)` (both ends included)   |
| `tag(log, interval(a, b))`, `a > 0`          | `FloatDistribution(a, b, log=True)`            |
| `tag(log, range(a, b))`, ints, step 1, a > 0 | `IntDistribution(a, b - 1, log=True)`          |
| a plain value (`128`, `adam`, `[1,2]`)       | fixed: the override string, e.g. `"128"`       |
| `glob(...)`, anything else                   | `SearchSpaceError`                             |

Choice values keep their grammar types (ints stay ints, `null` becomes None, quoted strings
lose their quotes); lists and mappings cannot be Optuna choices, so they are rejected.
Sampled values go back to Hydra through `SearchSpace.to_overrides`, which renders them so that
Hydra parses back the exact value and type.
"""

from __future__ import annotations

import decimal
import difflib
import logging
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    Quote,
    QuotedString,
    RangeSweep,
    Sweep,
    ValueType,
)
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.errors import UsageError

log = logging.getLogger(__name__)

SUPPORTED_FORMS: Final = (
    "choice(a, b, ...), a,b,..., range(start, stop[, step]), shuffle(range(...)), "
    "interval(low, high), int(interval(low, high)), tag(log, interval(low, high)) "
    "or a fixed value"
)
SUPPORTED_TAGS: Final = frozenset({"log"})
# shuffle(range(...)) is enumerated into a categorical; beyond this it is surely a mistake.
MAX_CATEGORICAL_VALUES: Final = 10_000
_ABSENT: Final = object()


class SearchSpaceError(UsageError, ValueError):
    """A search-space entry cannot be used; the message names the entry, the reason and the fix."""


@dataclass(frozen=True)
class SearchSpace:
    """A parsed search space.

    Attributes:
        distributions: The sampled dimensions, keyed by override key (e.g. `model.width`,
            `+trainer.extra`), in order of first appearance.
        fixed: The non-sweep entries as Hydra value strings (e.g. `"128"`, `"adam"`). The
            empty string marks a bare deletion (`~key`); no value renders as `""` otherwise.
    """

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]

    def __post_init__(self) -> None:
        for key, dist in self.distributions.items():
            if not isinstance(dist, BaseDistribution):
                raise TypeError(
                    f"distributions[{key!r}] is a {type(dist).__name__}; "
                    "use an optuna.distributions.BaseDistribution"
                )
        for key, value in self.fixed.items():
            if not isinstance(value, str):
                raise TypeError(
                    f"fixed[{key!r}]={value!r} is a {type(value).__name__}; "
                    "use the Hydra override value as a string"
                )

    def to_overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Hydra override strings `key=value`: the fixed entries first, then the sampled ones.

        Args:
            values: One value per sampled dimension (e.g. `trial.params`).

        Returns:
            Override strings that Hydra parses back to exactly `values` (same type and value).

        Raises:
            ValueError: if `values` misses a dimension or names an unknown one, or a value
                cannot be written in Hydra's grammar.
            TypeError: if `values` is not a mapping or a value is not a plain scalar/container.
        """
        if not isinstance(values, Mapping):
            raise TypeError(
                f"values must be a mapping of key -> value, got {type(values).__name__}"
            )
        missing = [key for key in self.distributions if key not in values]
        unknown = [key for key in values if key not in self.distributions]
        if missing or unknown:
            raise ValueError(
                f"values must hold exactly the sampled keys {list(self.distributions)}; "
                f"missing {missing}, unknown {unknown}"
            )
        lines = [key if value == "" else f"{key}={value}" for key, value in self.fixed.items()]
        lines += [f"{key}={render_value(values[key])}" for key in self.distributions]
        return lines

    def first_point(self) -> dict[str, Any]:
        """A valid value for every sampled dimension: the first choice, or the low end.

        What the sweeper composes a job config from before any trial, to find a config error
        that every trial would hit (`+model.widht=choice(1, 2)`).
        """
        return {key: _first_value(dist) for key, dist in self.distributions.items()}

    def grid(self) -> dict[str, list[Any]]:
        """Every sampled dimension as a list of values, for `optuna.samplers.GridSampler`.

        Raises:
            ValueError: for a continuous or log-scale dimension, naming its key.
        """
        return {key: _grid_values(key, dist) for key, dist in self.distributions.items()}


def parse_search_space(
    params: Mapping[str, Any] | None,
    overrides: Sequence[str] = (),
    *,
    config: DictConfig | None = None,
    group_options: Callable[[str], Sequence[str] | None] | None = None,
) -> SearchSpace:
    """Parse the sweeper's `params` and command-line `overrides` into a `SearchSpace`.

    Args:
        params: `{config.key: sweep-grammar string or plain value}` from the sweeper config.
        overrides: The sweeper's command-line arguments (`model.width=choice(32,64)`); they
            are applied after `params` and replace an entry for the same key entirely.
        config: The composed job config; when given, every key (except `+`/`++` additions)
            must exist in it.
        group_options: Returns the options of a config group (`optimizer` -> `[adam, sgd]`)
            or None when the key is not a group; the values of group entries must be options.

    Raises:
        SearchSpaceError: naming the offending `key=value` entry, the reason and the fix.
        TypeError: if an argument has the wrong type.
    """
    _check_argument_types(params, overrides, config, group_options)
    latest: dict[tuple[str, str | None], Override] = {}
    for line in _entry_lines(params, overrides):
        override = _parse_entry(line)
        # Re-assigning keeps the key's first position: dimensions stay in a stable order.
        latest[(override.key_or_group, override.package)] = override
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in latest.values():
        options = _check_key(override, config, group_options)
        result = distribution_from_override(override)
        if options is not None:
            _check_group_values(override, result, options)
        key = override.get_key_element()
        if isinstance(result, str):
            fixed[key] = result
        else:
            distributions[key] = result
    log.debug("search space: sampled %s, fixed %s", list(distributions), fixed)
    return SearchSpace(distributions=distributions, fixed=fixed)


def distribution_from_override(override: Override) -> BaseDistribution | str:
    """Map one parsed Hydra override to an Optuna distribution, or to its fixed value string.

    Raises:
        SearchSpaceError: for unsupported sweeps (`glob`, unknown tags) or empty/invalid
            ranges and intervals, naming the entry and the fix.
        TypeError: if `override` is not a Hydra `Override`.
    """
    if not isinstance(override, Override):
        raise TypeError(
            f"expected a hydra Override (from OverridesParser), got {type(override).__name__}"
        )
    entry = _entry_text(override)
    if not override.is_sweep_override():
        if override.is_delete() and override.value_type is None:
            return ""  # bare `~key`: SearchSpace.fixed's marker for "delete, whatever value"
        return render_value(override.value())
    if override.is_delete():
        raise _error(entry, "a deletion (~key) cannot be swept", "drop the sweep or the ~")
    sweep = override.value()
    if override.value_type is ValueType.GLOB_CHOICE_SWEEP or not isinstance(sweep, Sweep):
        raise _error(entry, "glob() and other sweep types are not supported", _use_forms())
    use_log = _use_log(entry, sweep.tags)
    if isinstance(sweep, ChoiceSweep):
        return _from_choice(entry, sweep, use_log)
    if isinstance(sweep, RangeSweep):
        return _from_range(entry, sweep, use_log)
    if isinstance(sweep, IntervalSweep):
        return _from_interval(entry, sweep, use_log)
    raise _error(entry, f"{type(sweep).__name__} is not supported", _use_forms())


def render_value(value: Any) -> str:
    """Write `value` in Hydra's override grammar so that Hydra parses back the same value.

    Floats use `repr` (shortest exact form), None is `null`, bools are `true`/`false`, and
    strings are quoted only when Hydra would otherwise read something else (`"1"`, `"true"`,
    `"a,b"`, `""`).

    Raises:
        TypeError: for a value that is not None, bool, int, float, str, list or mapping.
        ValueError: if no rendering parses back to `value`.
    """
    plain = _plain(value)
    text = _render(plain, nested=False)
    if not _parses_back(text, plain):
        if isinstance(plain, str):
            text = QuotedString(text=plain, quote=Quote.single).with_quotes()
        if not _parses_back(text, plain):
            raise ValueError(f"{value!r} cannot be written as a Hydra override value")
    return text


# --- parsing entries -------------------------------------------------------------------------


def _check_argument_types(
    params: object, overrides: object, config: object, group_options: object
) -> None:
    if params is not None and not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of key -> sweep string, got {params!r}")
    if isinstance(overrides, str) or not isinstance(overrides, Sequence | ListConfig):
        raise TypeError(f"overrides must be a list of 'key=value' strings, got {overrides!r}")
    bad = [o for o in overrides if not isinstance(o, str)]
    if bad:
        raise TypeError(f"overrides must be strings like 'model.width=64'; got {bad!r}")
    if config is not None and not isinstance(config, DictConfig):
        raise TypeError(f"config must be an omegaconf DictConfig, got {type(config).__name__}")
    if group_options is not None and not callable(group_options):
        raise TypeError(f"group_options must be a callable or None, got {group_options!r}")


def _entry_lines(params: Mapping[str, Any] | None, overrides: Sequence[str]) -> list[str]:
    lines = []
    for key, value in (params or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"params keys must be config keys as strings, got {key!r}")
        # YAML hands plain values over typed (128, true, null); those are rendered, while
        # strings are sweep grammar and go to the parser untouched.
        lines.append(f"{key}={value if isinstance(value, str) else render_value(value)}")
    return lines + list(overrides)


@cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


def _parse_entry(line: str) -> Override:
    try:
        return _parser().parse_overrides([line])[0]
    except OverrideParseException as exc:
        # Drop Hydra's own "Error parsing override '...'" header and doc link: we name the
        # entry ourselves and give the link in the fix.
        reason = "; ".join(
            part.strip()
            for part in str(exc.message).splitlines()
            if part.strip() and not part.startswith(("Error parsing override", "See https"))
        )
        raise _error(
            line,
            f"Hydra cannot parse it ({reason})",
            "write it in Hydra's override grammar "
            "(https://hydra.cc/docs/advanced/override_grammar/extended/) as " + SUPPORTED_FORMS,
        ) from exc


def _entry_text(override: Override) -> str:
    return override.input_line or override.get_key_element()


def _error(entry: str, reason: str, fix: str) -> SearchSpaceError:
    return SearchSpaceError(f"search space entry '{entry}': {reason}; {fix}")


def _use_forms() -> str:
    return f"use one of {SUPPORTED_FORMS}"


# --- key checks against the composed config --------------------------------------------------


def _check_key(
    override: Override,
    config: DictConfig | None,
    group_options: Callable[[str], Sequence[str] | None] | None,
) -> list[str] | None:
    """Validate the entry's key; return the group's options when the key is a config group."""
    entry, key = _entry_text(override), override.key_or_group
    if key == "hydra" or override.is_hydra_override():
        raise _error(
            entry,
            f"'{key}' is Hydra's own config, which the sweeper cannot search",
            "set it outside the search space (hydra.sweeper.params holds task keys only)",
        )
    options = group_options(key) if group_options is not None else None
    if options is not None:
        return [str(option) for option in options]
    adds = override.is_add() or override.is_force_add()
    if config is not None and not adds and not _key_exists(config, key):
        close = difflib.get_close_matches(key, list(_dotted_keys(config)), n=1)
        fix = f"did you mean '{close[0]}'?" if close else "check the spelling, or add it as +key"
        raise _error(entry, f"key '{key}' is not in the config", fix)
    return None


def _key_exists(config: DictConfig, key: str) -> bool:
    found = OmegaConf.select(
        config, key, default=_ABSENT, throw_on_missing=False, throw_on_resolution_failure=False
    )
    if found is not _ABSENT:
        return True
    # select() also answers the default for '???' values and broken interpolations, which
    # are real keys (a sweep config often leaves `optimizer.lr: ???` for the search to fill).
    parent_key, _, leaf = key.rpartition(".")
    parent = config
    if parent_key:
        parent = OmegaConf.select(
            config, parent_key, throw_on_missing=False, throw_on_resolution_failure=False
        )
    # `in` on a DictConfig is False for '???' values; keys() lists them.
    return isinstance(parent, DictConfig) and leaf in parent.keys()  # noqa: SIM118


def _dotted_keys(config: DictConfig) -> Iterator[str]:
    def walk(node: Any, prefix: str) -> Iterator[str]:
        if isinstance(node, dict):
            for name, child in node.items():
                path = f"{prefix}{name}"
                yield path
                yield from walk(child, f"{path}.")

    # resolve=False: suggestions must not fail on interpolations only the job can resolve.
    tree = OmegaConf.to_container(config, resolve=False)
    return (k for k in walk(tree, "") if k != "hydra" and not k.startswith("hydra."))


def _check_group_values(
    override: Override, result: BaseDistribution | str, options: list[str]
) -> None:
    entry, group = _entry_text(override), override.key_or_group
    values: list[Any]
    if isinstance(result, CategoricalDistribution):
        values = list(result.choices)
    elif isinstance(result, str):
        values = [] if result == "" else [override.value()]
    else:
        raise _error(
            entry,
            f"'{group}' is a config group, whose values are option names",
            f"sweep it with choice(...) over {', '.join(options)}",
        )
    # null deselects a group in Hydra, so it is always allowed.
    unknown = [v for v in values if v is not None and str(v) not in options]
    if unknown:
        raise _error(
            entry,
            f"{', '.join(repr(str(v)) for v in unknown)} is not an option of config group "
            f"'{group}'",
            f"available options: {', '.join(options)}",
        )


# --- sweeps -> distributions -----------------------------------------------------------------


def _use_log(entry: str, tags: set[str]) -> bool:
    unknown = sorted(set(tags) - SUPPORTED_TAGS)
    if unknown:
        raise _error(
            entry,
            f"unknown tag {', '.join(unknown)}",
            "the only supported tag is 'log', as in tag(log, interval(1e-4, 1e-1))",
        )
    return "log" in tags


def _from_choice(entry: str, sweep: ChoiceSweep, use_log: bool) -> CategoricalDistribution:
    if use_log:
        raise _error(entry, "tag(log, ...) has no meaning for a choice", "drop the tag")
    choices = [_choice_value(entry, item) for item in sweep.list]
    for i, first in enumerate(choices):
        for second in choices[i + 1 :]:
            # Optuna stores a choice as its index found by ==, so True/1/1.0 would collide.
            if first == second:
                raise _error(
                    entry,
                    f"choices {render_value(first)} and {render_value(second)} are the same to "
                    "Optuna (it cannot tell true from 1 or 1.0 from 1)",
                    "remove the duplicate, or quote one to make it a string",
                )
    return CategoricalDistribution(choices)


def _choice_value(entry: str, item: Any) -> bool | int | float | str | None:
    # Like hydra's Transformer.encode, but quoted strings lose their quotes (the value is the
    # text; to_overrides quotes it again when needed) and null stays None.
    if isinstance(item, QuotedString):
        return item.text
    if item is None or isinstance(item, bool | int | float | str):
        return item
    raise _error(
        entry,
        f"choice values must be scalars (str, int, float, bool, null), got {item!r}",
        "to choose between lists or mappings, make them options of a config group and "
        "sweep the group with choice(...)",
    )


def _from_range(entry: str, sweep: RangeSweep, use_log: bool) -> BaseDistribution:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    assert start is not None and stop is not None  # the grammar always fills both
    if step == 0:
        raise _error(entry, "the range step is 0", "use a non-zero step, e.g. range(0, 10, 2)")
    if all(isinstance(v, int) for v in (start, stop, step)):
        return _int_range(entry, range(int(start), int(stop), int(step)), sweep.shuffle, use_log)
    if not all(math.isfinite(v) for v in (start, stop, step)):
        raise _error(entry, "range bounds and step must be finite", "use finite numbers")
    first, count = _float_range(float(start), float(stop), float(step))
    if count == 0:
        raise _error(entry, "the range is empty", _empty_range_fix())
    if sweep.shuffle:
        return _categorical_range(entry, _float_steps(first, float(step), count), use_log)
    if use_log:
        raise _error(
            entry,
            "Optuna has no log scale with a step for floats",
            "use tag(log, interval(low, high)) instead",
        )
    last = _nth(first, float(step), count)
    return FloatDistribution(min(first, last), max(first, last), step=abs(float(step)))


def _int_range(entry: str, values: range, shuffle: bool, use_log: bool) -> BaseDistribution:
    # Hydra's range() excludes stop, as Python's does. The upstream plugin includes it; we
    # follow Hydra's grammar so `range(2, 4)` means what Hydra's basic sweeper runs: 2 and 3.
    if len(values) == 0:
        raise _error(entry, "the range is empty", _empty_range_fix())
    if shuffle:
        return _categorical_range(entry, list(values), use_log)
    low, high, step = min(values), max(values), abs(values.step)
    if use_log and (step != 1 or low < 1):
        raise _error(
            entry,
            "a log-scale int range needs step 1 and a positive lower bound (>= 1)",
            "write tag(log, range(1, 257)) or tag(log, int(interval(1, 256)))",
        )
    return IntDistribution(low, high, log=use_log, step=step)


def _categorical_range(entry: str, values: list[Any], use_log: bool) -> CategoricalDistribution:
    if use_log:
        raise _error(entry, "tag(log, ...) has no meaning for shuffle()", "drop the tag")
    if len(values) > MAX_CATEGORICAL_VALUES:
        raise _error(
            entry,
            f"shuffle() would make a choice of {len(values)} values",
            "drop shuffle() to get an Int/FloatDistribution",
        )
    return CategoricalDistribution(values)


def _empty_range_fix() -> str:
    return "range(start, stop[, step]) excludes stop, e.g. range(1, 4) gives 1, 2, 3"


def _float_range(start: float, stop: float, step: float) -> tuple[float, int]:
    """First value and count of `range(start, stop, step)` in decimal arithmetic.

    Hydra's FloatRange adds the binary steps, so `range(0, 0.9, 0.3)` gives 4 values there
    (0.3 * 3 is just below 0.9 in binary). We count with the decimals as written, which is
    what "stop is excluded" means to the user: 0, 0.3, 0.6.
    """
    with decimal.localcontext(prec=50):
        span = (_dec(stop) - _dec(start)) / _dec(step)
        count = int(span.to_integral_value(rounding=decimal.ROUND_CEILING))
    return start, max(count, 0)


def _nth(first: float, step: float, count: int) -> float:
    with decimal.localcontext(prec=50):
        return float(_dec(first) + (count - 1) * _dec(step))


def _float_steps(first: float, step: float, count: int) -> list[float]:
    # Decimal steps keep the grid clean (0.3, not 0.30000000000000004) and match Optuna's own
    # decimal check of (high - low) % step, so it does not warn about the bounds.
    with decimal.localcontext(prec=50):
        return [float(_dec(first) + i * _dec(step)) for i in range(count)]


def _dec(value: float) -> decimal.Decimal:
    return decimal.Decimal(repr(float(value)))


def _from_interval(entry: str, sweep: IntervalSweep, use_log: bool) -> BaseDistribution:
    low, high = sweep.start, sweep.end
    assert low is not None and high is not None  # the grammar always fills both
    if not (math.isfinite(low) and math.isfinite(high)):
        raise _error(entry, "interval bounds must be finite", "use finite numbers")
    if low >= high:
        raise _error(
            entry,
            f"the interval is empty: low ({low}) must be below high ({high})",
            "write interval(low, high) with low < high, or a fixed value",
        )
    if use_log and low <= 0:
        raise _error(
            entry,
            f"log scale needs a positive lower bound, got {low}",
            "use a lower bound > 0, e.g. tag(log, interval(1e-5, 1e-1))",
        )
    # int(interval(a, b)) casts both bounds to int; Hydra's interval() alone always gives floats.
    if isinstance(low, int) and isinstance(high, int):
        return IntDistribution(low, high, log=use_log)
    return FloatDistribution(float(low), float(high), log=use_log)


# --- grid ------------------------------------------------------------------------------------


def _first_value(dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        return dist.low
    raise TypeError(f"no first value for a {type(dist).__name__}")


def _grid_values(key: str, dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        if dist.log:
            raise ValueError(
                f"grid search cannot enumerate the log-scale dimension '{key}'; "
                "use choice(...) or range(...) for grid search"
            )
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        with decimal.localcontext(prec=50):
            count = int((_dec(dist.high) - _dec(dist.low)) / _dec(dist.step)) + 1
        return _float_steps(dist.low, dist.step, count)
    raise ValueError(
        f"grid search cannot enumerate the continuous dimension '{key}' ({dist}); "
        "use choice(...) or range(...) for grid search"
    )


# --- rendering values ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Normalise to None/bool/int/float/str/list/dict so rendering and comparison are exact."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=False)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise TypeError(
        f"{value!r} ({type(value).__name__}) cannot be a Hydra override value; "
        "use None, bool, int, float, str, a list or a mapping"
    )


def _render(value: Any, *, nested: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest string that reads back as the same double
    if isinstance(value, str):
        # Inside [..] and {..} the separators differ, so nested strings are always quoted;
        # so is "", whose bare form `key=` would read as SearchSpace.fixed's deletion marker.
        quote = nested or value == ""
        return QuotedString(text=value, quote=Quote.single).with_quotes() if quote else value
    if isinstance(value, list):
        return "[" + ",".join(_render(v, nested=True) for v in value) + "]"
    assert isinstance(value, dict), value  # _plain() leaves no other type
    # Hydra's dict keys are bare words (quoted keys do not parse); render_value() verifies.
    items = (f"{k}:{_render(v, nested=True)}" for k, v in value.items())
    return "{" + ",".join(items) + "}"


def _parses_back(text: str, expected: Any) -> bool:
    try:
        parsed = _parser().parse_overrides([f"key={text}"])[0]
    except OverrideParseException:
        return False
    return parsed.value_type is ValueType.ELEMENT and _same(parsed.value(), expected)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)
