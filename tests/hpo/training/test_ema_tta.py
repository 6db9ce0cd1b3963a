"""The loop's weight average (trainer.ema) and flip test-time augmentation (trainer.tta)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpo.training.loop import FitResult, TrainSettings, evaluate, fit
from hpo.training.precision import Precision
from models import FlipTTA

Batches = list[tuple[torch.Tensor, torch.Tensor]]
# So close to 1 that the average never leaves the weights it started from.
FROZEN = 1 - 1e-9


def _batches(n: int, seed: int, batch: int = 32) -> Batches:
    """Linearly separable 2-class data: the sign of the first feature."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def _net() -> nn.Module:
    """Weights, biases and BatchNorm buffers: every kind of state the average must follow."""
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _fit(model: nn.Module, epochs: int = 2, lr: float = 0.5, **settings) -> FitResult:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    train_settings = TrainSettings(epochs=epochs, progress=False, **settings)
    return fit(
        model,
        _batches(256, 0),
        _batches(128, 1),
        optimizer=opt,
        scheduler=None,
        settings=train_settings,
    )


def _floats(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}


def test_each_step_moves_the_average_and_without_validation_the_final_average_is_kept() -> None:
    torch.manual_seed(0)
    model = _net()
    decay = 0.9
    expected = _floats(model.state_dict())  # the average starts at the initial weights
    steps: list[dict[str, torch.Tensor]] = []

    def after_step(epoch: int, metrics: dict[str, float]) -> None:
        steps.append(_floats(model.state_dict()))  # one batch per epoch: one step each

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    settings = TrainSettings(epochs=4, progress=False, ema=decay)
    result = fit(
        model,
        _batches(96, 0, batch=96),
        None,
        optimizer=opt,
        scheduler=None,
        settings=settings,
        on_epoch_end=after_step,
    )
    for live in steps:
        expected = {k: decay * expected[k] + (1 - decay) * live[k] for k in expected}
    averaged = _floats(result.best_state)
    assert averaged.keys() == expected.keys()
    for key in expected:  # parameters and BatchNorm running statistics alike
        torch.testing.assert_close(averaged[key], expected[key], msg=key)
    assert not torch.allclose(averaged["0.weight"], steps[-1]["0.weight"])
    assert not torch.allclose(averaged["1.running_mean"], steps[-1]["1.running_mean"])


def test_checkpoint_holds_the_average_and_reloads_into_a_bare_model() -> None:
    decay = 0.8
    torch.manual_seed(0)
    replica = _net()
    torch.manual_seed(0)
    model = _net()
    result = _fit(model, epochs=1, ema=decay)

    # The same steps by hand: plain SGD with the EMA formula after each one.
    opt = torch.optim.SGD(replica.parameters(), lr=0.5)
    expected = _floats(replica.state_dict())
    replica.train()
    for x, y in _batches(256, 0):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(replica(x), y).backward()
        opt.step()
        live = _floats(replica.state_dict())
        expected = {k: decay * expected[k] + (1 - decay) * live[k] for k in expected}

    assert result.best_state.keys() == model.state_dict().keys()
    for key, value in expected.items():
        torch.testing.assert_close(result.best_state[key], value, msg=key)
    assert not torch.allclose(result.best_state["0.weight"], model.state_dict()["0.weight"])
    bare = _net()
    bare.load_state_dict(result.best_state)  # strict: the bare network's own keys
    loss, acc = evaluate(bare, _batches(128, 1))
    assert acc == result.best_metrics["val/acc"]
    assert loss == pytest.approx(result.best_metrics["val/loss"], rel=1e-6)


def test_validation_runs_on_the_average() -> None:
    torch.manual_seed(0)
    model = _net()
    start = copy.deepcopy(model)
    result = _fit(model, ema=FROZEN)
    start_loss, start_acc = evaluate(start, _batches(128, 1))
    _, live_acc = evaluate(model, _batches(128, 1))
    assert live_acc > start_acc + 0.2  # the live weights learned; the average did not move
    for metrics in result.history:
        assert metrics["val/acc"] == start_acc
        assert metrics["val/loss"] == pytest.approx(start_loss, rel=1e-5)
    assert result.best_metrics["val/acc"] == start_acc  # what early stopping and pruning see


def test_warm_up_epochs_validate_live_weights_then_average_from_there() -> None:
    torch.manual_seed(0)
    plain = _fit(_net(), epochs=1)
    torch.manual_seed(0)
    warmed = _fit(_net(), epochs=3, ema=FROZEN, ema_warmup_epochs=1)
    first = plain.history[0]
    # Epoch 1 is plain training; the average starts from its weights and stays there (one
    # average for the rest of the run: one started anew at epoch 3 would validate epoch 2's).
    for metrics in warmed.history:
        assert metrics["val/acc"] == first["val/acc"]
        assert metrics["val/loss"] == pytest.approx(first["val/loss"], rel=1e-5)


def test_ema_under_bf16_autocast_and_channels_last_keeps_fp32_weights() -> None:
    torch.manual_seed(0)

    def conv_net() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 2),
        ).to(memory_format=torch.channels_last)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=g).to(memory_format=torch.channels_last)
    y = (x[:, 0, :, :4].mean((1, 2)) > x[:, 0, :, 4:].mean((1, 2))).long()
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    model = conv_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = TrainSettings(
        epochs=2, progress=False, ema=0.9, tta=True, precision=Precision("bf16", "cpu")
    )
    result = fit(model, batches, batches, optimizer=opt, scheduler=None, settings=settings)
    assert all(v.dtype == torch.float32 for v in _floats(result.best_state).values())
    bare = conv_net()
    bare.load_state_dict(result.best_state)
    loss, acc = evaluate(FlipTTA(bare), batches, settings.precision)
    assert acc == result.best_metrics["val/acc"]
    assert loss == pytest.approx(result.best_metrics["val/loss"], rel=1e-5)


def test_tta_validates_on_the_mean_of_image_and_mirror() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    result = _fit(model, epochs=1, lr=0.0, tta=True)  # lr 0: the weights stay as they are
    val = _batches(128, 1)
    tta_loss, tta_acc = evaluate(FlipTTA(model), val)
    plain_loss, _ = evaluate(model, val)
    assert result.history[0]["val/loss"] == pytest.approx(tta_loss, rel=1e-6)
    assert result.history[0]["val/acc"] == tta_acc
    assert tta_loss != pytest.approx(plain_loss, rel=1e-3)
