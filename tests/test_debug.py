"""conf/debug/: `debug=tiny` shrinks any run, the default one, each experiment and each model.

What the tests and the README's smoke run rely on: synthetic data, few epochs, small batches,
no progress bar and a smaller model, with the experiment's recipe and search kept.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from hpo.schema import register_configs

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
# Models whose size debug=tiny sets (conf/debug/model/tiny_<model>.yaml); the others keep it.
SHRUNK = sorted(p.stem.removeprefix("tiny_") for p in (CONF_DIR / "debug/model").glob("*.yaml"))


def _compose(*overrides: str) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def _parameters(cfg: DictConfig) -> int:
    return sum(p.numel() for p in instantiate(cfg.model).parameters())


def test_every_tiny_model_file_names_a_model() -> None:
    # A misspelt tiny_<model>.yaml would be skipped silently (the default is optional).
    assert SHRUNK and set(SHRUNK) <= set(MODELS)


@pytest.mark.parametrize("selection", [(), ("hydra/sweeper=optuna",), *EXPERIMENTS])
def test_debug_tiny_shrinks_the_run_and_keeps_its_recipe_and_search(
    selection: tuple[str, ...] | str,
) -> None:
    chosen = (f"experiment={selection}",) if isinstance(selection, str) else selection
    full, tiny = _compose(*chosen), _compose(*chosen, "debug=tiny")
    assert full.hydra.runtime.choices.debug is None
    assert tiny.hydra.runtime.choices.debug == "tiny"
    assert tiny.data._target_ == "data.SyntheticData" != full.data._target_
    assert tiny.trainer.epochs == 2 < full.trainer.epochs
    assert tiny.trainer.batch_size < full.trainer.batch_size
    assert tiny.trainer.progress is False and full.trainer.progress is True
    assert _parameters(tiny) < _parameters(full) / 2
    # Everything else is the run it shrinks: the model, its recipe and the whole search.
    assert tiny.model._target_ == full.model._target_
    for group in ("optimizer", "scheduler", "augmentation"):
        assert tiny[group] == full[group], group
    for key in ("label_smoothing", "tta", "ema", "no_decay_norm_bias", "precision"):
        assert tiny.trainer[key] == full.trainer[key], key
    # The search is the same but for its study (a debug study never joins the real one)
    # and its multi-fidelity rungs, which shrink with the epochs (1 and 2).
    sweeper, tiny_sweeper = dict(full.hydra.sweeper), dict(tiny.hydra.sweeper)
    name, tiny_name = sweeper.pop("study_name", None), tiny_sweeper.pop("study_name", None)
    fidelity, tiny_fidelity = sweeper.pop("fidelity", None), tiny_sweeper.pop("fidelity", None)
    assert tiny_sweeper == sweeper
    if fidelity is not None:
        assert tiny_fidelity.key == fidelity.key and tiny_fidelity.max == tiny.trainer.epochs
        assert tiny_fidelity.min < tiny_fidelity.max
    if name is not None:
        assert tiny_name == f"{name}-synthetic"


@pytest.mark.parametrize("model", MODELS)
def test_debug_tiny_shrinks_each_model_that_has_a_size(model: str) -> None:
    full, tiny = _compose(f"model={model}"), _compose(f"model={model}", "debug=tiny")
    assert tiny.model._target_ == full.model._target_
    if model in SHRUNK:
        assert _parameters(tiny) < _parameters(full) / 2
    else:
        assert tiny.model == full.model


def test_the_command_line_overrides_debug_tiny() -> None:
    cfg = _compose("experiment=quick", "debug=tiny", "model.widths=[4,8,8]", "trainer.epochs=1")
    assert list(cfg.model.widths) == [4, 8, 8] and cfg.trainer.epochs == 1
    assert _compose("debug=tiny", "data=fashion_mnist").data._target_ == "data.FashionMNISTData"
