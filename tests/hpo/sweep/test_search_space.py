from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.sweep.search_space import (
    SearchSpace,
    SearchSpaceError,
    distribution_from_override,
    parse_search_space,
    render_value,
)

PARSER = OverridesParser.create()


def parse_value(line: str) -> Any:
    """What Hydra reads back from one `key=value` override."""
    return PARSER.parse_overrides([line])[0].value()


def assert_same_distribution(actual: BaseDistribution | str, expected: BaseDistribution) -> None:
    assert actual == expected
    # == cannot tell 1 from 1.0 or True, and Hydra must get back the type it was given.
    if isinstance(expected, CategoricalDistribution):
        assert isinstance(actual, CategoricalDistribution)
        assert [type(c) for c in actual.choices] == [type(c) for c in expected.choices]
    if isinstance(expected, IntDistribution | FloatDistribution):
        assert isinstance(actual, IntDistribution | FloatDistribution)
        assert (type(actual.low), type(actual.high)) == (type(expected.low), type(expected.high))


Cat = CategoricalDistribution
Int = IntDistribution
Float = FloatDistribution

# grammar string -> distribution
SWEEPS: list[tuple[str, BaseDistribution]] = [
    ("choice(16, 32, 64)", Cat([16, 32, 64])),
    ("16,32,64", Cat([16, 32, 64])),
    ("choice(adam, adamw, sgd)", Cat(["adam", "adamw", "sgd"])),
    ("choice('a b', 'c,d', \"it's\", '1')", Cat(["a b", "c,d", "it's", "1"])),
    ("choice(2, 1.5, x, true)", Cat([2, 1.5, "x", True])),
    ("choice(false, true)", Cat([False, True])),
    ("1,null", Cat([1, None])),
    ("shuffle(a, b)", Cat(["a", "b"])),
    ("choice(1e-4, 1e-3)", Cat([1e-4, 1e-3])),
    # Hydra's range() excludes stop, like Python's.
    ("range(2, 5)", Int(2, 4)),
    ("range(5)", Int(0, 4)),
    ("range(0, 10, 3)", Int(0, 9, step=3)),
    ("range(10, 0, -3)", Int(1, 10, step=3)),
    ("range(2, 3)", Int(2, 2)),
    ("int(range(1.0, 4.0))", Int(1, 3)),
    ("range(0.1, 0.5, 0.1)", Float(0.1, 0.4, step=0.1)),
    ("range(0, 1, 0.25)", Float(0.0, 0.75, step=0.25)),
    ("range(1, 2.5, 0.5)", Float(1.0, 2.0, step=0.5)),
    ("range(1.0, 0.0, -0.25)", Float(0.25, 1.0, step=0.25)),
    # 0.3 * 3 is below 0.9 in binary; the written decimals say stop 0.9 is excluded.
    ("range(0, 0.9, 0.3)", Float(0.0, 0.6, step=0.3)),
    ("float(range(1, 4))", Float(1.0, 3.0, step=1.0)),
    ("shuffle(range(1, 4))", Cat([1, 2, 3])),
    ("shuffle(range(0.1, 0.4, 0.1))", Cat([0.1, 0.2, 0.3])),
    ("tag(log, range(1, 257))", Int(1, 256, log=True)),
    ("interval(0.0, 0.5)", Float(0.0, 0.5)),
    ("interval(1, 10)", Float(1.0, 10.0)),
    ("int(interval(1, 10))", Int(1, 10)),
    ("tag(log, interval(1e-4, 1e-2))", Float(1e-4, 1e-2, log=True)),
    ("tag(log, int(interval(1, 256)))", Int(1, 256, log=True)),
]


@pytest.mark.parametrize(("grammar", "expected"), SWEEPS)
def test_sweep_grammar_maps_to_distribution(grammar: str, expected: BaseDistribution) -> None:
    space = parse_search_space({"model.x": grammar})
    assert space.fixed == {}
    assert list(space.distributions) == ["model.x"]
    assert_same_distribution(space.distributions["model.x"], expected)


# written value -> fixed override string, and the value Hydra reads back from it
FIXED: list[tuple[Any, str, Any]] = [
    ("128", "128", 128),
    (128, "128", 128),
    ("adam", "adam", "adam"),
    ("null", "null", None),
    (None, "null", None),
    ("true", "true", True),
    (True, "true", True),
    (False, "false", False),
    (0.001, "0.001", 0.001),
    ("1e-4", "0.0001", 1e-4),
    ("'1'", "'1'", "1"),
    ("str(1)", "'1'", "1"),
    ("'a b'", "a b", "a b"),
    ("'a,b'", "'a,b'", "a,b"),
    ("''", "''", ""),
    ("[16,32]", "[16,32]", [16, 32]),
    ([16, "a b"], "[16,'a b']", [16, "a b"]),
    ({"k": 1}, "{k:1}", {"k": 1}),
    ("${model.width}", "${model.width}", "${model.width}"),
]


@pytest.mark.parametrize(("written", "fixed", "read_back"), FIXED)
def test_plain_value_becomes_fixed_override(written: Any, fixed: str, read_back: Any) -> None:
    space = parse_search_space({"model.x": written})
    assert space.distributions == {}
    assert space.fixed == {"model.x": fixed}
    value = parse_value(f"model.x={fixed}")
    assert value == read_back
    assert type(value) is type(read_back)


def test_bare_deletion_is_kept_as_a_deletion() -> None:
    space = parse_search_space(None, ["~model.dropout", "~model.depth=3"])
    assert space.fixed == {"~model.dropout": "", "~model.depth": "3"}
    assert space.to_overrides({}) == ["~model.dropout", "~model.depth=3"]


def test_distribution_from_override_handles_one_parsed_override() -> None:
    sweep, fixed = PARSER.parse_overrides(["a=range(1,3)", "b='x y'"])
    assert_same_distribution(distribution_from_override(sweep), Int(1, 2))
    assert distribution_from_override(fixed) == "x y"


@pytest.mark.parametrize(
    ("params", "overrides", "distributions", "fixed"),
    [
        # a CLI sweep replaces the params dimension entirely
        ({"m.w": "choice(16,32)"}, ["m.w=choice(32,64)"], {"m.w": Cat([32, 64])}, {}),
        # a fixed CLI value removes the dimension and fixes it
        (
            {"m.w": "choice(16,32)", "m.d": "range(2,4)"},
            ["m.w=64"],
            {"m.d": Int(2, 3)},
            {"m.w": "64"},
        ),
        # and a CLI sweep turns a fixed params value into a dimension
        ({"m.w": 64}, ["m.w=interval(0, 1)"], {"m.w": Float(0.0, 1.0)}, {}),
        # an added key is the same key
        ({"m.w": "choice(1,2)"}, ["++m.w=3"], {}, {"++m.w": "3"}),
        (None, ["m.w=1,2", "m.w=3,4"], {"m.w": Cat([3, 4])}, {}),
    ],
)
def test_later_entry_replaces_earlier_one(
    params: dict[str, Any] | None,
    overrides: list[str],
    distributions: dict[str, BaseDistribution],
    fixed: dict[str, str],
) -> None:
    space = parse_search_space(params, overrides)
    assert space.distributions == distributions
    assert space.fixed == fixed


def test_dimensions_keep_order_of_first_appearance() -> None:
    space = parse_search_space(
        {"b": "choice(1,2)", "a": "choice(3,4)", "f": 1},
        ["c=choice(5,6)", "b=choice(7,8)", "f=2"],
    )
    assert list(space.distributions) == ["b", "a", "c"]
    assert space.distributions["b"] == Cat([7, 8])
    assert space.to_overrides({"c": 5, "a": 3, "b": 7}) == ["f=2", "b=7", "a=3", "c=5"]


# values that must come back from Hydra exactly, type included
ROUND_TRIP: list[Any] = [
    1e-4,
    0.1 + 0.2,
    1e-05,
    1e22,
    -0.0,
    2.0,
    math.inf,
    -math.inf,
    3,
    -7,
    10**20,
    True,
    False,
    None,
    "adam",
    "a b",
    "c,d",
    "x=y",
    "1",
    "1.5",
    "1e-4",
    "true",
    "null",
    "inf",
    "",
    " padded ",
    "it's",
    'say "hi"',
    "back\\slash",
    "back\\'quote",
    "(paren)",
    "[1,2]",
    "{a:1}",
    "path/to/file.ckpt",
    "${model.width}",
    "ünïcode",
    [1, "a b", None],
    {"k": "v w", "n": 2.5},
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_to_overrides_round_trips_through_hydra(value: Any) -> None:
    space = SearchSpace(distributions={"model.x": Cat(["unused"])}, fixed={})
    (line,) = space.to_overrides({"model.x": value})
    assert line.startswith("model.x=")
    parsed = parse_value(line)
    assert parsed == value
    assert type(parsed) is type(value)
    if isinstance(value, float):
        assert math.copysign(1.0, parsed) == math.copysign(1.0, value)


def test_to_overrides_round_trips_nan() -> None:
    space = SearchSpace(distributions={"x": Float(0.0, 1.0)}, fixed={})
    assert math.isnan(parse_value(space.to_overrides({"x": math.nan})[0]))


@pytest.mark.parametrize(
    ("value", "text"),
    [("adam", "adam"), ("1", "'1'"), ("", "''"), ("a,b", "'a,b'"), (0.5, "0.5"), (True, "true")],
)
def test_render_value_quotes_only_when_needed(value: Any, text: str) -> None:
    assert render_value(value) == text


def test_to_overrides_puts_fixed_first_then_sampled_in_order() -> None:
    space = parse_search_space(
        {"model.depth": "range(2, 4)", "model.hidden": 128, "optimizer": "choice(adam, sgd)"}
    )
    lines = space.to_overrides({"optimizer": "sgd", "model.depth": 3})
    assert lines == ["model.hidden=128", "model.depth=3", "optimizer=sgd"]


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ({}, ValueError, r"missing \['a'\]"),
        ({"a": 1, "zz": 2}, ValueError, r"unknown \['zz'\]"),
        ([("a", 1)], TypeError, "mapping"),
        ({"a": object()}, TypeError, "cannot be a Hydra override value"),
    ],
)
def test_to_overrides_rejects_bad_values(values: Any, error: type[Exception], match: str) -> None:
    space = SearchSpace(distributions={"a": Cat([1, 2])}, fixed={})
    with pytest.raises(error, match=match):
        space.to_overrides(values)


@pytest.mark.parametrize(
    ("distribution", "grid"),
    [
        (Cat(["adam", None, 1]), ["adam", None, 1]),
        (Int(2, 4), [2, 3, 4]),
        (Int(0, 9, step=3), [0, 3, 6, 9]),
        (Float(0.1, 0.4, step=0.1), [0.1, 0.2, 0.3, 0.4]),
        (Float(0.0, 1.0, step=0.25), [0.0, 0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_grid_lists_every_value(distribution: BaseDistribution, grid: list[Any]) -> None:
    space = SearchSpace(distributions={"k": distribution}, fixed={"f": "1"})
    assert space.grid() == {"k": grid}


def test_grid_of_parsed_space_matches_range_semantics() -> None:
    space = parse_search_space({"a": "range(2, 5)", "b": "range(0.1, 0.5, 0.1)", "c": "x,y"})
    assert space.grid() == {"a": [2, 3, 4], "b": [0.1, 0.2, 0.3, 0.4], "c": ["x", "y"]}


@pytest.mark.parametrize(
    ("distribution", "match"),
    [
        (Float(0.0, 1.0), "continuous dimension 'model.k'.*use choice\\(...\\) or range\\(...\\)"),
        (Float(1e-4, 1.0, log=True), "'model.k'.*use choice"),
        (Int(1, 256, log=True), "log-scale dimension 'model.k'.*use choice"),
    ],
)
def test_grid_rejects_dimensions_it_cannot_enumerate(
    distribution: BaseDistribution, match: str
) -> None:
    space = SearchSpace(distributions={"model.k": distribution}, fixed={})
    with pytest.raises(ValueError, match=match):
        space.grid()


# entry -> fragments the error must contain (the entry itself is always checked)
ERRORS: list[tuple[str, list[str]]] = [
    ("a=range(1, 1)", ["range is empty", "excludes stop"]),
    ("a=range(5, 1)", ["range is empty", "excludes stop"]),
    ("a=range(0.5, 0.1, 0.1)", ["range is empty"]),
    ("a=range(1, 5, 0)", ["step is 0", "non-zero step"]),
    ("a=interval(1, 1)", ["interval is empty", "low < high"]),
    ("a=interval(2, 1)", ["interval is empty", "low < high"]),
    ("a=interval(0, inf)", ["finite"]),
    ("a=tag(log, interval(0, 1))", ["log scale needs a positive lower bound", "> 0"]),
    ("a=tag(log, interval(-1, 1))", ["positive lower bound"]),
    ("a=tag(log, range(0, 10))", ["positive lower bound", "tag(log, range(1, 257))"]),
    ("a=tag(log, range(1, 10, 2))", ["step 1"]),
    ("a=tag(log, range(0.1, 1, 0.1))", ["log scale with a step", "tag(log, interval"]),
    ("a=tag(log, choice(1, 2))", ["no meaning for a choice", "drop the tag"]),
    ("a=tag(log, shuffle(range(1, 3)))", ["no meaning for shuffle"]),
    ("a=tag(lgo, interval(1, 2))", ["unknown tag lgo", "only supported tag is 'log'"]),
    ("a=glob(*)", ["glob() and other sweep types are not supported", "choice(a, b, ...)"]),
    ("a=choice(1, true)", ["same to Optuna", "remove the duplicate"]),
    ("a=choice(x, x)", ["same to Optuna"]),
    ("a=choice([1, 2], [3])", ["must be scalars", "config group"]),
    ("a=choice(", ["Hydra cannot parse it", "override grammar", "choice(a, b, ...)"]),
    ("a=choice()", ["Hydra cannot parse it", "empty choice"]),
    ("a b=1", ["Hydra cannot parse it"]),
    ("~a=choice(1, 2)", ["deletion", "cannot be swept"]),
    ("hydra.run.dir=out", ["Hydra's own config", "cannot search"]),
    ("hydra/launcher=joblib", ["Hydra's own config"]),
    ("a=shuffle(range(0, 20000))", ["choice of 20000 values", "drop shuffle()"]),
]


@pytest.mark.parametrize(("entry", "fragments"), ERRORS)
def test_errors_name_entry_reason_and_fix(entry: str, fragments: list[str]) -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(None, [entry])
    message = str(info.value)
    assert message.startswith(f"search space entry '{entry}': ")
    for fragment in fragments:
        assert fragment in message


def test_params_errors_name_the_rendered_entry() -> None:
    with pytest.raises(SearchSpaceError, match=r"^search space entry 'model\.x=range\(3, 3\)': "):
        parse_search_space({"model.x": "range(3, 3)"})


def test_search_space_error_is_a_value_error() -> None:
    assert issubclass(SearchSpaceError, ValueError)


OPTIONS = {"optimizer": ["adam", "adamw", "sgd"], "model": ["cnn", "resnet"]}


@pytest.fixture
def config() -> DictConfig:
    cfg = OmegaConf.create(
        {
            "model": {"width": 16, "depth": 2, "lr_scale": "???", "ref": "${nope.missing}"},
            "optimizer": {"lr": 0.01, "name": "adam"},
            "trainer": {"batch_size": 64},
            "hydra": {"run": {"dir": "out"}},
        }
    )
    OmegaConf.set_struct(cfg, True)  # as Hydra hands it over
    return cfg


def group_options(key: str) -> Sequence[str] | None:
    return OPTIONS.get(key)


@pytest.mark.parametrize(
    "entry",
    [
        "model.width=choice(16, 32)",
        "model.lr_scale=interval(0.1, 1)",  # '???' values are keys too
        "model.ref=1,2",  # so are interpolations only the job can resolve
        "+model.extra=choice(1, 2)",
        "++trainer.new=3",
        "optimizer=choice(adam, sgd)",
        "optimizer=sgd",
        "optimizer=null",
        "model=cnn",
        "~model.depth",
    ],
)
def test_config_accepts_known_keys_and_options(config: DictConfig, entry: str) -> None:
    space = parse_search_space(None, [entry], config=config, group_options=group_options)
    assert len(space.distributions) + len(space.fixed) == 1


def test_unknown_key_suggests_the_close_one(config: DictConfig) -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space({"model.widht": "choice(16,32)"}, config=config)
    assert str(info.value) == (
        "search space entry 'model.widht=choice(16,32)': key 'model.widht' is not in the "
        "config; did you mean 'model.width'?"
    )


@pytest.mark.parametrize(
    ("entry", "fragments"),
    [
        ("zzz=1", ["key 'zzz' is not in the config", "+key"]),
        ("trainer.batchsize=1,2", ["did you mean 'trainer.batch_size'?"]),
        ("optimizer=choice(adam, rmsprop)", ["'rmsprop' is not an option of config group"]),
        ("optimizer=rmsprop", ["'rmsprop'", "available options: adam, adamw, sgd"]),
        ("optimizer=interval(0, 1)", ["config group", "choice(...) over adam, adamw, sgd"]),
        ("hydra.run.dir=x", ["Hydra's own config"]),
    ],
)
def test_config_rejects_unknown_keys_and_options(
    config: DictConfig, entry: str, fragments: list[str]
) -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(None, [entry], config=config, group_options=group_options)
    message = str(info.value)
    assert message.startswith(f"search space entry '{entry}': ")
    for fragment in fragments:
        assert fragment in message


def test_suggestions_never_point_into_hydra_config(config: DictConfig) -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space({"run.dir": 1}, config=config)
    assert "hydra" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"params": ["a=1"]}, "params must be a mapping"),
        ({"params": {1: "a"}}, "params keys"),
        ({"params": None, "overrides": "a=1"}, "overrides must be a list"),
        ({"params": None, "overrides": ["a=1", 2]}, "overrides must be strings"),
        ({"params": None, "config": {"a": 1}}, "DictConfig"),
        ({"params": None, "group_options": ["adam"]}, "group_options must be a callable"),
        ({"params": {"a": object()}}, "cannot be a Hydra override value"),
    ],
)
def test_wrong_argument_types_raise_type_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        parse_search_space(**kwargs)


def test_search_space_validates_its_fields() -> None:
    with pytest.raises(TypeError, match="BaseDistribution"):
        SearchSpace(distributions={"a": [1, 2]}, fixed={})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match=r"fixed\['a'\]"):
        SearchSpace(distributions={}, fixed={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="Override"):
        distribution_from_override("a=1")  # type: ignore[arg-type]
