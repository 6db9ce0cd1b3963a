"""Behaviour every model must share: formats, gradients, learning, eval determinism, configs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from models import CNN, PreActResNet, SeedCNN

SIZE = 12  # small inputs keep these tests fast; 28x28 shapes are covered per model

FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "cnn": lambda: CNN(image_size=SIZE, width=8),
    "cnn_gap_double": lambda: CNN(image_size=SIZE, depth=3, width=8, hidden=0, double_conv=True),
    "cnn_no_bn": lambda: CNN(image_size=SIZE, width=8, batch_norm=False, dropout=0.0),
    "seed_cnn": lambda: SeedCNN(image_size=SIZE),
    "resnet": lambda: PreActResNet(image_size=SIZE, width=8),
}
models_under_test = pytest.mark.parametrize("name", list(FACTORIES))


def _build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return FACTORIES[name]()


def _batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, SIZE, SIZE, generator=gen), torch.randint(0, 10, (n,), generator=gen)


@models_under_test
def test_channels_last_gives_the_same_logits(name: str) -> None:
    model = _build(name).eval()
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x, _ = _batch()
    with torch.no_grad():
        expected = model(x)
        actual = fast(x.to(memory_format=torch.channels_last))
    # Catches a flatten that reads NHWC memory in the wrong order, not just shape errors.
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@models_under_test
def test_every_parameter_receives_a_gradient(name: str) -> None:
    model = _build(name).train()
    x, y = _batch()
    nn.functional.cross_entropy(model(x), y).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters outside the computation graph: {dead}"


@models_under_test
def test_can_overfit_one_tiny_batch(name: str) -> None:
    # Random labels can only be fitted by memorising: a model that cannot is miswired.
    # Calibrated over 20 seeds: the worst loss ratio after 30 steps was 0.20 (threshold 0.5).
    model = _build(name).train()
    x, y = _batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0]


@models_under_test
def test_eval_mode_is_deterministic_and_per_sample(name: str) -> None:
    model = _build(name)
    x, y = _batch()
    # A few training steps move BN running statistics away from their (0, 1) start.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model.train()(x), y).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
        alone = model(x[:3])
    assert torch.equal(first, second)
    # In eval mode BN and dropout must not mix samples: a sample's logits ignore its batch.
    torch.testing.assert_close(alone, first[:3], rtol=1e-4, atol=1e-5)


def test_train_mode_dropout_is_stochastic() -> None:
    model = CNN(image_size=SIZE, width=8, dropout=0.5, batch_norm=False).train()
    x, _ = _batch()
    assert not torch.equal(model(x), model(x))


CONF_MODEL = Path(__file__).resolve().parents[2] / "conf" / "model"


@pytest.mark.parametrize(
    ("config", "expected_type"),
    [("cnn.yaml", CNN), ("seed_cnn.yaml", SeedCNN), ("resnet.yaml", PreActResNet)],
)
def test_conf_model_files_instantiate(config: str, expected_type: type[nn.Module]) -> None:
    data = {"in_channels": 1, "num_classes": 7, "image_size": 28}
    cfg = OmegaConf.create({"data": data, "model": OmegaConf.load(CONF_MODEL / config)})
    model = instantiate(cfg.model)
    assert type(model) is expected_type
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
