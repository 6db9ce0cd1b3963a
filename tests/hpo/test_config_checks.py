from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from hpo.config_checks import ConfigError, check_config

CONF = Path(__file__).resolve().parents[2] / "conf"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_default_config_is_valid(compose_cfg) -> None:
    assert check_config(compose_cfg(tiny=False)) == ("val/acc",)


@pytest.mark.parametrize(
    ("group", "option"),
    [
        (g, o)
        for g in ("data", "model", "optimizer", "scheduler", "augmentation", "tracking")
        for o in _options(g)
    ],
)
def test_every_group_option_composes_and_builds(compose_cfg, group: str, option: str) -> None:
    cfg = compose_cfg(f"{group}={option}")
    check_config(cfg)
    if group == "data" and option == "fashion_mnist":
        assert cfg.data.cache_dir.endswith(".cache/fashion-mnist")
        assert Path(cfg.data.cache_dir).is_absolute()
        return  # building it reads the real files: covered by the slow tests
    model = instantiate(cfg.model)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, cfg.data.num_classes)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=10)
    assert scheduler.get_last_lr()[0] > 0
    augment = instantiate(cfg.augmentation)
    assert augment(torch.zeros(2, 1, 28, 28), torch.Generator()).shape == (2, 1, 28, 28)
    splits = instantiate(cfg.data).setup()
    assert splits.train_images.shape[1:] == (1, 28, 28)


def test_model_interpolates_data_settings(compose_cfg) -> None:
    cfg = compose_cfg("data.num_classes=7")
    assert cfg.model.num_classes == 7


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 is invalid: expected a number > 0"),
        ("optimizer.weight_decay=-1", "optimizer.weight_decay=-1 is invalid"),
        ("model.dropout=1.0", "model.dropout=1.0 is invalid: expected a number in [0.0, 1.0)"),
        ("model.dropout=-0.5", "model.dropout=-0.5 is invalid"),
        ("trainer.epochs=0", "trainer.epochs=0 is invalid: expected an integer >= 1"),
        ("trainer.batch_size=2.5", "trainer.batch_size=2.5 is invalid"),
        ("trainer.device=tpu", "trainer.device='tpu' is invalid: expected one of auto, cpu"),
        ("trainer.label_smoothing=1", "trainer.label_smoothing=1 is invalid"),
        ("objective=val/accuracy", "unknown metric 'val/accuracy'"),
        ("+model.widht=64", "model.widht is not a setting of models.CNN"),
        ("+trainer.epoch=3", "trainer.epoch is not a known setting"),
        ("+optimizer.betas2=1", "optimizer.betas2 is not a setting of torch.optim.AdamW"),
        ("+foo=1", "foo is not a known setting"),
    ],
)
def test_invalid_settings_fail_with_key_value_and_fix(compose_cfg, override, expected) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(compose_cfg(override))
    assert expected in str(info.value)


def test_typo_gets_a_suggestion(compose_cfg) -> None:
    with pytest.raises(ConfigError, match=r"did you mean model\.width\?"):
        check_config(compose_cfg("+model.widht=64"))


def test_all_problems_are_reported_together(compose_cfg) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(compose_cfg("optimizer.lr=-1", "model.dropout=2"))
    assert "optimizer.lr" in str(info.value) and "model.dropout" in str(info.value)


def test_momentum_only_checked_where_it_exists(compose_cfg) -> None:
    check_config(compose_cfg("optimizer=adam"))
    with pytest.raises(ConfigError, match=r"optimizer\.momentum=1\.5"):
        check_config(compose_cfg("optimizer=sgd", "optimizer.momentum=1.5"))


@pytest.mark.parametrize(("group", "bad"), [("optimizer", "adagrad"), ("model", "vgg")])
def test_unknown_group_option_lists_the_choices(compose_cfg, group: str, bad: str) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg(f"{group}={bad}")
    for option in _options(group):
        assert option in str(info.value)


def test_unknown_key_override_is_rejected_by_hydra(compose_cfg) -> None:
    with pytest.raises(ConfigCompositionException, match=r"model\.widht"):
        compose_cfg("model.widht=64")


def test_every_pair_of_model_and_optimizer_builds(compose_cfg) -> None:
    for model, optimizer in itertools.product(_options("model"), _options("optimizer")):
        cfg = compose_cfg(f"model={model}", f"optimizer={optimizer}")
        check_config(cfg)
        net = instantiate(cfg.model)
        instantiate(cfg.optimizer)(net.parameters())
