from __future__ import annotations

import pytest
import torch
from torch import nn

from hpo.training.loop import FitResult, TrainingDivergedError, TrainSettings, evaluate, fit
from hpo.training.precision import Precision

TRAIN_KEYS = {"train/loss", "train/acc", "lr", "epoch_seconds", "images_per_second"}


def _batches(n: int, seed: int, batch: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Linearly separable 2-class data: the sign of the first feature."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def _fit(model: nn.Module, epochs: int = 3, lr: float = 0.1, **kwargs) -> FitResult:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    settings = TrainSettings(epochs=epochs, progress=False, **kwargs)
    return fit(
        model, _batches(256, 0), _batches(128, 1), optimizer=opt, scheduler=None, settings=settings
    )


def test_fit_learns_and_reports_every_metric() -> None:
    torch.manual_seed(0)
    result = _fit(nn.Linear(4, 2), epochs=3)
    assert len(result.history) == 3
    expected = {
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "lr",
        "epoch_seconds",
        "images_per_second",
    }
    assert set(result.history[0]) == expected
    assert result.best_metrics["val/acc"] > 0.9
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]


def test_best_state_is_the_best_epoch_weights_not_the_last() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    snapshots: list[dict[str, torch.Tensor]] = []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def remember(epoch: int, metrics: dict[str, float]) -> None:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    settings = TrainSettings(epochs=4, progress=False)
    # Monitoring val/loss with a rising lr is not guaranteed monotone; check the bookkeeping.
    result = fit(
        model,
        _batches(256, 0),
        _batches(128, 1),
        optimizer=opt,
        scheduler=None,
        settings=settings,
        monitor="val/loss",
        on_epoch_end=remember,
    )
    losses = [h["val/loss"] for h in result.history]
    assert result.best_epoch == losses.index(min(losses)) + 1
    for key, value in result.best_state.items():
        assert torch.equal(value, snapshots[result.best_epoch - 1][key])


def test_patience_stops_early() -> None:
    torch.manual_seed(0)
    # lr=0 never improves after epoch 1, so patience=2 stops after epoch 3.
    result = _fit(nn.Linear(4, 2), epochs=10, lr=0.0, patience=2)
    assert result.stopped_early
    assert len(result.history) == 3
    assert result.best_epoch == 1


def test_callback_exception_stops_training() -> None:
    class StopError(Exception):
        pass

    def stop_at_two(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            raise StopError

    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(StopError):
        fit(
            model,
            _batches(64, 0),
            _batches(64, 1),
            optimizer=opt,
            scheduler=None,
            settings=TrainSettings(epochs=5, progress=False),
            on_epoch_end=stop_at_two,
        )


def test_divergence_raises_a_clear_error() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    batches = _batches(256, 0)
    x, y = batches[3]
    batches[3] = (x * float("inf"), y)  # one poisoned batch turns every weight into NaN
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        TrainingDivergedError, match=r"train/loss became nan in epoch 1.*optimizer\.lr"
    ):
        settings = TrainSettings(epochs=2, progress=False)
        fit(model, batches, _batches(64, 1), optimizer=opt, scheduler=None, settings=settings)


def test_grad_clip_prevents_the_same_divergence() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e3)
    settings = TrainSettings(epochs=1, progress=False, grad_clip=1e-6)
    result = fit(
        model, _batches(256, 0), _batches(128, 1), optimizer=opt, scheduler=None, settings=settings
    )
    assert torch.isfinite(torch.tensor(result.history[0]["train/loss"]))


def test_without_validation_every_epoch_trains_and_the_final_weights_are_kept() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    snapshots: list[dict[str, torch.Tensor]] = []

    def remember(epoch: int, metrics: dict[str, float]) -> None:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = TrainSettings(epochs=3, progress=False)
    result = fit(
        model,
        _batches(256, 0),
        None,
        optimizer=opt,
        scheduler=None,
        settings=settings,
        on_epoch_end=remember,
    )
    assert len(result.history) == 3 and not result.stopped_early
    assert all(set(metrics) == TRAIN_KEYS for metrics in result.history)  # no val/ metrics
    assert result.best_epoch == 3 and result.best_metrics is result.history[-1]
    for key, value in result.best_state.items():
        assert torch.equal(value, snapshots[-1][key])  # the final weights...
    assert not torch.equal(result.best_state["weight"], snapshots[0]["weight"])  # ...not epoch 1's
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]


@pytest.mark.parametrize(
    ("settings", "monitor", "message"),
    [
        (TrainSettings(epochs=3, patience=1), None, r"patience=1 needs validation batches"),
        (TrainSettings(epochs=3), "val/loss", r"monitor='val/loss' needs validation batches"),
    ],
)
def test_without_validation_patience_and_monitor_are_refused_before_training(
    settings: TrainSettings, monitor: str | None, message: str
) -> None:
    model = nn.Linear(4, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        fit(
            model,
            _batches(64, 0),
            None,
            optimizer=opt,
            scheduler=None,
            settings=settings,
            monitor=monitor,
        )
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class _CountingScaler(torch.amp.GradScaler):
    """A real CPU GradScaler that counts the losses it scales."""

    def __init__(self) -> None:
        super().__init__("cpu")
        self.scaled = 0

    def scale(self, outputs):  # type: ignore[override]
        self.scaled += 1
        return super().scale(outputs)


@pytest.mark.parametrize("validate", [True, False])
def test_the_scaler_fit_makes_for_fp16_scales_every_step(
    validate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CPU autocast runs fp16 here; the scaler is spied on where fit asks the precision for it.
    made: list[_CountingScaler] = []

    def grad_scaler(self: Precision) -> _CountingScaler:
        assert self.name == "fp16"
        made.append(_CountingScaler())
        return made[-1]

    monkeypatch.setattr(Precision, "grad_scaler", grad_scaler)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    settings = TrainSettings(epochs=2, progress=False, precision=Precision("fp16", "cpu"))
    train = _batches(256, 0)
    result = fit(
        model,
        train,
        _batches(64, 1) if validate else None,
        optimizer=opt,
        scheduler=None,
        settings=settings,
    )
    assert len(made) == 1  # one scaler for the whole fit: its scale adapts across epochs
    assert made[0].scaled == 2 * len(train)
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]


def test_evaluate_ignores_label_smoothing_and_counts_exactly() -> None:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    loss, acc = evaluate(model, [(x, y)])
    assert acc == pytest.approx(2 / 3)
    expected = nn.functional.cross_entropy(model(x), y).item()
    assert loss == pytest.approx(expected)
