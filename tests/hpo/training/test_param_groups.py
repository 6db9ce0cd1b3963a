from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from hpo import builders
from hpo.training.param_groups import no_decay_norm_bias, parameter_groups
from hpo.training.precision import FP32
from models import CNN, PreActResNet, SeedCNN


class _Mixed(nn.Module):
    """Convs with and without bias, BatchNorm, LayerNorm, GroupNorm and a shared layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.head = nn.Linear(4, 8)
        self.ln = nn.LayerNorm(8)
        self.out = nn.Linear(8, 2)
        self.tied = self.out  # the same parameters reachable twice


def _names(model: nn.Module, params: list[nn.Parameter]) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_norm_weights_and_biases_go_undecayed_everything_once() -> None:
    model = _Mixed()
    decay, no_decay = no_decay_norm_bias(model)
    everything = [*decay["params"], *no_decay["params"]]
    assert len(everything) == len({id(p) for p in everything})  # nobody twice
    assert {id(p) for p in everything} == {id(p) for p in model.parameters()}  # nobody missed
    assert "weight_decay" not in decay  # takes the optimizer's configured value
    assert no_decay["weight_decay"] == 0.0
    assert _names(model, decay["params"]) == {"conv.weight", "head.weight", "out.weight"}
    assert _names(model, no_decay["params"]) == {
        "bn.weight",
        "bn.bias",
        "gn.weight",
        "gn.bias",
        "head.bias",
        "ln.weight",
        "ln.bias",
        "out.bias",
    }


@pytest.mark.parametrize("make", [SeedCNN, CNN, lambda: PreActResNet(depth=8)])
def test_project_models_split_completely(make) -> None:
    model = make()
    groups = no_decay_norm_bias(model)
    covered = [id(p) for g in groups for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in model.parameters())
    # In these models the undecayed ones (biases, BatchNorm scales) are exactly the 1-D ones.
    decayed = [p for g in groups if "weight_decay" not in g for p in g["params"]]
    undecayed = [p for g in groups if "weight_decay" in g for p in g["params"]]
    assert undecayed and all(p.ndim == 1 for p in undecayed)
    assert decayed and all(p.ndim > 1 for p in decayed)


def test_optimizer_decays_only_the_decayed_group() -> None:
    model = _Mixed()
    optimizer = torch.optim.AdamW(no_decay_norm_bias(model), lr=0.1, weight_decay=0.05)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    # Zero gradients: AdamW then only decays, so exactly the decayed group moves.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"conv.weight", "head.weight", "out.weight"}


def test_a_model_without_biases_or_norms_gets_one_group() -> None:
    groups = no_decay_norm_bias(nn.Linear(3, 2, bias=False))
    assert len(groups) == 1 and "weight_decay" not in groups[0]


@pytest.mark.parametrize("enabled", [False, True])
def test_builders_split_the_groups_only_when_asked(compose_cfg, enabled: bool) -> None:
    cfg = compose_cfg(
        "optimizer=sgd",
        "scheduler=linear_warmup",
        f"trainer.no_decay_norm_bias={str(enabled).lower()}",
        "trainer.ema=0.99",
        "trainer.ema_warmup_epochs=2",
        "trainer.tta=true",
    )
    net = instantiate(cfg.model)
    optimizer, _, settings = builders.optimization(cfg, net, steps_per_epoch=10, precision=FP32)
    decays = [g["weight_decay"] for g in optimizer.param_groups]
    wd = cfg.optimizer.weight_decay
    assert wd > 0
    assert decays == ([wd, 0.0] if enabled else [wd])
    assert (settings.ema, settings.ema_warmup_epochs, settings.tta) == (0.99, 2, True)


@pytest.mark.parametrize("no_decay", [False, True])
def test_a_scale_of_one_leaves_the_groups_as_they_were(no_decay: bool) -> None:
    model = _Mixed()
    groups = parameter_groups(
        model, no_decay=no_decay, norm_bias_lr_scale=1.0, lr=0.1, weight_decay=0.05
    )
    expected = no_decay_norm_bias(model) if no_decay else [{"params": list(model.parameters())}]
    assert [set(g) for g in groups] == [set(g) for g in expected]
    assert [[id(p) for p in g["params"]] for g in groups] == [
        [id(p) for p in g["params"]] for g in expected
    ]


@pytest.mark.parametrize(("no_decay", "bias_decay"), [(True, 0.0), (False, 0.05 / 64)])
def test_norm_biases_get_their_own_scaled_group(no_decay: bool, bias_decay: float) -> None:
    model = _Mixed()
    groups = parameter_groups(
        model, no_decay=no_decay, norm_bias_lr_scale=64.0, lr=0.1, weight_decay=0.05
    )
    covered = [id(p) for g in groups for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in model.parameters())  # each exactly once
    scaled = groups[-1]
    assert _names(model, scaled["params"]) == {"bn.bias", "gn.bias", "ln.bias"}
    assert scaled["lr"] == pytest.approx(6.4)
    assert scaled["weight_decay"] == pytest.approx(bias_decay)
    # A Linear's bias is not a norm bias: it stays at the optimizer's rate.
    assert all("lr" not in g for g in groups[:-1])
    assert "head.bias" in _names(model, [p for g in groups[:-1] for p in g["params"]])


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_scale_is_refused(scale: float) -> None:
    with pytest.raises(ValueError, match=r"trainer\.norm_bias_lr_scale=.* must be a finite number"):
        parameter_groups(_Mixed(), no_decay=True, norm_bias_lr_scale=scale, lr=0.1, weight_decay=0)


@pytest.mark.parametrize("scheduler", ["linear_warmup", "onecycle", "cosine"])
def test_the_schedule_keeps_the_norm_bias_ratio(compose_cfg, scheduler: str) -> None:
    cfg = compose_cfg(
        "optimizer=sgd",
        f"scheduler={scheduler}",
        "trainer.no_decay_norm_bias=true",
        "trainer.norm_bias_lr_scale=8",
        "model=cnn",
    )
    net = instantiate(cfg.model)
    optimizer, schedule, _ = builders.optimization(cfg, net, steps_per_epoch=10, precision=FP32)
    assert len(optimizer.param_groups) == 3
    for _ in range(7):  # through the warm-up or the one-cycle's rise and into the decay
        optimizer.step()
        schedule.step()
        lrs = [g["lr"] for g in optimizer.param_groups]
        assert lrs[0] > 0 and lrs[1] == pytest.approx(lrs[0])
        assert lrs[2] == pytest.approx(8 * lrs[0])
