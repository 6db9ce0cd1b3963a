from __future__ import annotations

import itertools

import pytest
import torch

from hpo.training import schedulers


def _rates(make, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make(opt, total_steps=steps)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_constant_keeps_lr() -> None:
    assert _rates(schedulers.constant, 10) == pytest.approx([0.1] * 10)


def test_cosine_warms_up_then_decays_to_floor() -> None:
    rates = _rates(
        lambda o, total_steps: schedulers.cosine(
            o, total_steps=total_steps, warmup_fraction=0.1, min_lr_ratio=0.01
        ),
        100,
    )
    assert rates[0] < rates[9] == pytest.approx(0.1)
    assert max(rates) == pytest.approx(0.1)
    assert rates[-1] == pytest.approx(0.001, rel=0.05)
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))


def test_onecycle_peaks_at_max_lr() -> None:
    rates = _rates(
        lambda o, total_steps: schedulers.onecycle(
            o, total_steps=total_steps, max_lr=0.5, pct_start=0.25
        ),
        40,
    )
    peak = max(range(40), key=rates.__getitem__)
    assert rates[peak] == pytest.approx(0.5, rel=0.02)
    assert 8 <= peak <= 11
    assert rates[-1] < 0.01


def test_linear_warmup_rises_then_falls_linearly_to_zero() -> None:
    rates = _rates(
        lambda o, total_steps: schedulers.linear_warmup(
            o, total_steps=total_steps, warmup_fraction=0.2, start_factor=0.1
        ),
        50,
    )
    # 10 warm-up steps from 0.01 to the peak 0.1 (reached at step 10), then 40 down to 0.
    assert rates[:11] == pytest.approx([0.01 + 0.009 * i for i in range(11)])
    assert rates[10:] == pytest.approx([0.1 * (40 - i) / 40 for i in range(40)])
    assert max(rates) == pytest.approx(0.1)
    assert rates[-1] == pytest.approx(0.1 / 40)  # the last step still trains


def test_linear_warmup_steps_the_optimizer_down_to_zero_and_every_group() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.2}], lr=0.1)
    sched = schedulers.linear_warmup(opt, total_steps=8, warmup_fraction=0.25, start_factor=0.5)
    rates = []
    for _ in range(8):
        rates.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert rates[0] == pytest.approx([0.05, 0.1])
    assert rates[2] == pytest.approx([0.1, 0.2])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0, 0.0])


@pytest.mark.parametrize(("steps", "fraction"), [(1, 0.1), (2, 0.5), (3, 0.9), (10, 0.0)])
def test_linear_warmup_survives_tiny_runs_and_no_warmup(steps: int, fraction: float) -> None:
    rates = _rates(
        lambda o, total_steps: schedulers.linear_warmup(
            o, total_steps=total_steps, warmup_fraction=fraction
        ),
        steps,
    )
    assert len(rates) == steps
    assert all(0 < r <= 0.1 + 1e-12 for r in rates)
    if fraction == 0.0:
        assert rates == pytest.approx([0.1 * (steps - i) / steps for i in range(steps)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda o: schedulers.linear_warmup(o, total_steps=10, warmup_fraction=1), "warmup_fr"),
        (lambda o: schedulers.linear_warmup(o, total_steps=10, start_factor=0), "start_factor"),
        (lambda o: schedulers.cosine(o, total_steps=10, warmup_fraction=1.0), "warmup_fraction"),
        (lambda o: schedulers.cosine(o, total_steps=10, min_lr_ratio=2.0), "min_lr_ratio"),
        (lambda o: schedulers.onecycle(o, total_steps=10, max_lr=0.1, pct_start=0), "pct_start"),
        (lambda o: schedulers.constant(o, total_steps=0), "total_steps=0"),
    ],
)
def test_invalid_arguments_name_the_setting(make, message: str) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=message):
        make(opt)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 7])
def test_onecycle_survives_tiny_runs(steps: int) -> None:
    rates = _rates(
        lambda o, total_steps: schedulers.onecycle(
            o, total_steps=total_steps, max_lr=0.1, pct_start=0.25
        ),
        steps,
    )
    assert len(rates) == steps
    assert all(0 < r <= 0.1 + 1e-12 for r in rates)
