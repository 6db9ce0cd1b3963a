"""trainer.precision: what `auto` resolves to, what is refused, and that bf16 trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hpo.training import precision as precision_module
from hpo.training.loop import TrainSettings, evaluate, fit
from hpo.training.precision import FP32, Precision, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_a_cpu_follows_native_bf16(monkeypatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", CPU) == Precision(expected, "cpu")


@pytest.mark.parametrize("spec", ["fp32", "bf16"])
def test_explicit_choices_are_kept_on_a_cpu(spec: str) -> None:
    assert resolve_precision(spec, CPU).name == spec


def test_auto_elsewhere_is_fp32() -> None:
    assert resolve_precision("auto", torch.device("mps")).name == "fp32"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fp16", r"fp16 needs a CUDA device, but this run is on cpu"),
        ("half", r"trainer.precision='half' is not one of auto, fp32, bf16, fp16"),
    ],
)
def test_refused_choices_say_why(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_precision(spec, CPU)


def test_dtypes_and_scaler() -> None:
    assert FP32.dtype is None and FP32.grad_scaler() is None
    assert Precision("bf16", "cpu").dtype == torch.bfloat16
    assert Precision("bf16", "cpu").grad_scaler() is None  # bf16 has fp32's exponent range
    assert Precision("fp16", "cuda").dtype == torch.float16


def test_bf16_autocast_runs_the_forward_in_bf16_and_keeps_fp32_weights() -> None:
    layer = nn.Linear(8, 4)
    with Precision("bf16", "cpu").autocast():
        out = layer(torch.randn(2, 8))
    assert out.dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32
    with FP32.autocast():
        assert layer(torch.randn(2, 8)).dtype == torch.float32


def _separable(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, 512, 64)]


@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_a_small_net_learns_at_each_cpu_precision(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 2))
    batches = _separable(1)
    settings = TrainSettings(epochs=4, progress=False, precision=Precision(name, "cpu"))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    result = fit(model, batches, batches, optimizer=optimizer, scheduler=None, settings=settings)
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]
    assert result.best_metrics["val/acc"] > 0.9
    # Validation ran under the same autocast; the kept weights are fp32.
    model.load_state_dict(result.best_state)
    assert evaluate(model, batches, settings.precision)[1] == result.best_metrics["val/acc"]
    assert all(t.dtype == torch.float32 for t in result.best_state.values())
