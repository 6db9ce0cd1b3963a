from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
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
        ("trainer.device=tpu", "trainer.device='tpu' is invalid: expected one of auto, cpu"),
        ("trainer.label_smoothing=1", "trainer.label_smoothing=1.0 is invalid"),
        ("trainer.ema=1", "trainer.ema=1.0 is invalid: expected null (off) or a decay in (0, 1)"),
        ("trainer.ema=0", "trainer.ema=0.0 is invalid: expected null (off) or a decay in (0, 1)"),
        ("trainer.ema_warmup_epochs=-1", "trainer.ema_warmup_epochs=-1 is invalid"),
        (
            "trainer.norm_bias_lr_scale=0",
            "trainer.norm_bias_lr_scale=0.0 is invalid: expected a number > 0",
        ),
        ("trainer.norm_bias_lr_scale=nan", "trainer.norm_bias_lr_scale=nan is invalid"),
        (
            "scheduler=linear_warmup scheduler.warmup_fraction=1",
            "scheduler.warmup_fraction=1 is invalid: expected a number in [0.0, 1.0)",
        ),
        (
            "scheduler=linear_warmup scheduler.start_factor=0",
            "scheduler.start_factor=0 is invalid: expected a number in (0.0, 1.0]",
        ),
        ("scheduler=cosine scheduler.warmup_fraction=-0.1", "scheduler.warmup_fraction=-0.1 is"),
        ("objective=val/accuracy", "unknown metric 'val/accuracy'"),
        ("+model.widht=64", "model.widht is not a setting of models.CNN"),
        ("+trainer.epoch=3", "trainer.epoch is not a known setting"),
        ("+tracking.urii=x", "tracking.urii is not a known setting"),
        ("seed=-1", "seed=-1 is invalid: expected an integer >= 0"),
        ("+optimizer.betas2=1", "optimizer.betas2 is not a setting of torch.optim.AdamW"),
        ("+foo=1", "foo is not a known setting"),
    ],
)
def test_invalid_settings_fail_with_key_value_and_fix(compose_cfg, override, expected) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(compose_cfg(*override.split()))
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("+model.widht=64", "model.width"),
        ("+trainer.epoch=3", "trainer.epochs"),
        ("+tracking.experimnt=x", "tracking.experiment"),
        ("+sed=1", "seed"),
    ],
)
def test_typo_gets_the_allowed_keys_and_a_suggestion(compose_cfg, override, suggestion) -> None:
    with pytest.raises(ConfigError) as info:
        check_config(compose_cfg(override))
    assert f"did you mean {suggestion}?" in str(info.value)
    assert "(allowed: " in str(info.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.batch_size=2.5", r"Value '2.5' of type 'float' could not be converted to Int"),
        ("trainer.epochs=abc", r"Value 'abc' of type 'str' could not be converted to Integer"),
        ("tracking.log_figures=maybe", r"Value 'maybe' is not a valid bool"),
        ("seed=x", r"Value 'x' of type 'str' could not be converted to Integer"),
        ("trainer.epoch=3", r"Key 'epoch' not in 'TrainerConf'"),
    ],
)
def test_schema_rejects_wrong_types_and_keys_while_composing(compose_cfg, override, expected):
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg(override)
    assert re.search(expected, f"{info.value} {info.value.__cause__}")


def test_a_typo_in_a_yaml_option_is_rejected_by_the_schema(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "trainer" / "typo.yaml").write_text("defaults:\n  - default\n  - _self_\nepochz: 3\n")
    with (
        initialize_config_dir(config_dir=str(conf), version_base="1.3"),
        pytest.raises(ConfigCompositionException) as info,
    ):
        compose("config", overrides=["trainer=typo"])
    text = f"{info.value} {info.value.__cause__}"
    assert "trainer/typo" in text and "Key 'epochz' not in 'TrainerConf'" in text


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


def test_every_pair_of_model_and_optimizer_builds_and_steps(compose_cfg) -> None:
    for model, optimizer in itertools.product(_options("model"), _options("optimizer")):
        cfg = compose_cfg(f"model={model}", f"optimizer={optimizer}")
        check_config(cfg)
        net = instantiate(cfg.model)
        opt = instantiate(cfg.optimizer)(net.parameters())
        # The optimizer holds every trainable weight of the model, at the configured rate.
        held = {id(p) for group in opt.param_groups for p in group["params"]}
        assert held == {id(p) for p in net.parameters() if p.requires_grad}
        assert opt.param_groups[0]["lr"] == cfg.optimizer.lr
        before = [p.detach().clone() for p in net.parameters()]
        net(torch.randn(4, 1, 28, 28)).logsumexp(dim=1).mean().backward()
        opt.step()
        changed = any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
        assert changed, f"{model} + {optimizer}: one step changed no weight"


def test_precision_this_machine_cannot_run_fails_before_training(compose_cfg) -> None:
    with pytest.raises(ConfigError, match=r"fp16 needs a CUDA device"):
        check_config(compose_cfg("trainer.precision=fp16", "trainer.device=cpu"))
    with pytest.raises(ConfigError, match=r"trainer.precision='half' is invalid"):
        check_config(compose_cfg("trainer.precision=half"))
