"""Multi-fidelity with the budget as a parameter: the rungs, ASHA promotion, and sweeps of
the toy task (tests/toy_app) whose budget is its `steps`."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial
from toy_app.harness import ToySweep, run_worker_processes

from hpo.sweep import sweeper as sweeper_module
from hpo.sweep.fidelity import (
    BUDGET_ATTR,
    CONFIG_ATTR,
    PROMOTED_FROM_ATTR,
    RUNG_ATTR,
    Fidelity,
    FidelityConfigError,
    carried_attrs,
)
from hpo.sweep.liveness import WORKER_ATTR

# --- the rungs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "budgets"),
    [
        ({"key": "trainer.epochs", "min": 4, "max": 20, "eta": 3}, (7, 20)),
        ({"key": "trainer.epochs", "min": 1, "max": 27, "eta": 3}, (1, 3, 9, 27)),
        ({"key": "trainer.epochs", "min": 2, "max": 16}, (5, 16)),  # eta 3: 16/9 < 2
        ({"key": "data.fraction", "min": 0.25, "max": 1.0, "eta": 2}, (0.25, 0.5, 1.0)),
    ],
)
def test_rungs_are_max_over_powers_of_eta_down_to_min(setting, budgets) -> None:
    fidelity = Fidelity.from_setting(setting)
    assert fidelity.budgets == budgets
    assert fidelity.top == len(budgets) - 1
    assert all(type(b) is type(budgets[0]) for b in fidelity.budgets)  # epochs stay ints


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"key": "trainer.epochs", "min": 4}, "missing: ['max']"),
        ({"key": "trainer.epochs", "min": 4, "max": 20, "rate": 3}, "unknown: ['rate']"),
        ({"key": "trainer.epochs", "min": 20, "max": 4}, "need 0 < min < max"),
        ({"key": "trainer.epochs", "min": 4, "max": 20, "eta": 1}, "must be an int >= 2"),
        ({"key": "trainer.epochs", "min": 10, "max": 20, "eta": 3}, "gives one rung"),
        ({"key": "", "min": 1, "max": 9}, "must be a config key"),
    ],
)
def test_a_malformed_fidelity_names_the_fix(setting, message) -> None:
    with pytest.raises(FidelityConfigError, match=message.replace("[", r"\[")):
        Fidelity.from_setting(setting)


def test_steps_grow_with_the_rung() -> None:
    assert [Fidelity.from_setting({"key": "k", "min": 1, "max": 9}).step(r) for r in range(3)] == [
        1,
        3,
        9,
    ]
    fractions = Fidelity.from_setting({"key": "k", "min": 0.25, "max": 1.0, "eta": 2})
    assert [fractions.step(r) for r in range(3)] == [0, 1, 1]  # 1.0 is integral: step 1


# --- promotion ----------------------------------------------------------------------------

FIDELITY = Fidelity.from_setting({"key": "steps", "min": 1, "max": 9, "eta": 3})  # 1, 3, 9
X = {"x": FloatDistribution(-1.0, 1.0)}


def _study(*runs: tuple[float, int, TrialState, int | None]) -> list[FrozenTrial]:
    """Trials (x, rung, state, config) in a study of minimisation; value = x."""
    study = optuna.create_study(direction="minimize")
    for x, rung, state, config in runs:
        attrs: dict[str, Any] = {RUNG_ATTR: rung, BUDGET_ATTR: FIDELITY.budgets[rung]}
        if config is not None:
            attrs[CONFIG_ATTR] = config
        done = state in (TrialState.COMPLETE, TrialState.PRUNED)
        study.add_trial(
            create_trial(
                params={"x": x},
                distributions=X,
                value=x if state == TrialState.COMPLETE else None,
                intermediate_values={FIDELITY.step(rung): x} if done else {},
                state=state,
                user_attrs=attrs,
            )
        )
    # A PRUNED trial added this way keeps no value; tell-made ones do (value = last step).
    return [
        t if t.state != TrialState.PRUNED else _with_value(t)
        for t in study.get_trials(deepcopy=True)
    ]


def _with_value(trial: FrozenTrial) -> FrozenTrial:
    trial.value = trial.intermediate_values[max(trial.intermediate_values)]
    return trial


# Values 0.5, 0.1, 0.9 at rung 0, configurations 0, 1, 2.
THREE_AT_RUNG_0 = [(x, 0, TrialState.PRUNED, i) for i, x in enumerate((0.5, 0.1, 0.9))]


def test_no_promotion_until_a_rung_has_eta_results() -> None:
    runs = _study((0.5, 0, TrialState.PRUNED, 0), (0.1, 0, TrialState.PRUNED, 1))
    assert FIDELITY.promotion(runs, maximize=False) is None


def test_the_best_third_of_a_rung_is_promoted_once() -> None:
    runs = _study(*THREE_AT_RUNG_0)
    promotion = FIDELITY.promotion(runs, maximize=False)
    assert promotion is not None
    assert (promotion.params, promotion.rung, promotion.budget) == ({"x": 0.1}, 1, 3)
    assert (promotion.config, promotion.promoted_from) == (1, 1)
    assert promotion.user_attrs == {
        RUNG_ATTR: 1,
        BUDGET_ATTR: 3,
        CONFIG_ATTR: 1,
        PROMOTED_FROM_ATTR: 1,
    }
    # Once config 1 has a run at rung 1 (queued, running, done or failed), it is not
    # promoted again; with 3 results only one is eligible, so nothing else is either.
    for state in (TrialState.WAITING, TrialState.RUNNING, TrialState.FAIL):
        assert FIDELITY.promotion([*runs, *_study((0.1, 1, state, 1))], maximize=False) is None


def test_maximizing_promotes_the_largest_value() -> None:
    runs = _study(*THREE_AT_RUNG_0)
    promotion = FIDELITY.promotion(runs, maximize=True)
    assert promotion is not None and promotion.params == {"x": 0.9}


def test_the_highest_rung_is_promoted_first_and_the_deadline_skips_what_does_not_fit() -> None:
    rung0 = [(x, 0, TrialState.PRUNED, i) for i, x in enumerate((0.1, 0.2, 0.3, 0.4, 0.5, 0.6))]
    rung1 = [(0.1, 1, TrialState.PRUNED, 0), (0.2, 1, TrialState.PRUNED, 1)]
    rung1 += [(0.3, 1, TrialState.PRUNED, 2)]
    runs = _study(*rung0, *rung1)
    top = FIDELITY.promotion(runs, maximize=False)
    assert top is not None and (top.rung, top.config) == (2, 0)
    # If a 9-step run does not fit before the deadline, the next rung down is offered:
    # two of six rung-0 results are eligible, configs 0 and 1, both already at rung 1.
    assert FIDELITY.promotion(runs, maximize=False, fits=lambda b: b < 9) is None
    runs = _study(*rung0, (0.1, 1, TrialState.PRUNED, 0))
    lower = FIDELITY.promotion(runs, maximize=False, fits=lambda b: b < 9)
    assert lower is not None and (lower.rung, lower.config, lower.params) == (1, 1, {"x": 0.2})


def test_a_run_without_a_rung_is_a_new_configuration_at_rung_0() -> None:
    study = optuna.create_study()
    study.add_trial(create_trial(params={"x": 0.0}, distributions=X, value=0.0))
    (trial,) = study.trials
    assert FIDELITY.rung_of(trial) == 0
    assert FIDELITY.start_attrs(4) == {RUNG_ATTR: 0, BUDGET_ATTR: 1, CONFIG_ATTR: 4}
    assert carried_attrs({RUNG_ATTR: 1, "worker": "w", CONFIG_ATTR: 2}) == {
        RUNG_ATTR: 1,
        CONFIG_ATTR: 2,
    }


# --- sweeps of the toy task -----------------------------------------------------------------


def _said(capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    return out + err


FIDELITY_ARGS = (
    "hydra.sweeper.fidelity={key: steps, min: 1, max: 9, eta: 3}",
    "hydra/sweeper/pruner=none",
)


def test_a_multi_fidelity_sweep_promotes_by_rung_and_reports_top_budget_runs_only(
    toy_sweep: ToySweep,
) -> None:
    # Fewer steps look better (the bonus): a sampler or a best trial that compared values
    # across budgets would prefer 1-step runs.
    assert toy_sweep.run(*FIDELITY_ARGS, "short_run_bonus=0.5", n_trials=14) == 0
    study = toy_sweep.study()
    trials = study.trials
    assert len(trials) == 14 and all(t.state != TrialState.FAIL for t in trials)
    by_rung: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        rung = t.user_attrs[RUNG_ATTR]
        by_rung.setdefault(rung, []).append(t)
        # The job ran its own budget, and its value is stored at step = budget.
        assert t.user_attrs["toy_steps"] == FIDELITY.budgets[rung] == t.user_attrs[BUDGET_ATTR]
        assert t.intermediate_values == ({} if rung == 2 else {FIDELITY.budgets[rung]: t.value})
        assert t.state == (TrialState.COMPLETE if rung == 2 else TrialState.PRUNED)
    assert sorted(by_rung) == [0, 1, 2], "14 runs with eta 3 reach the top rung"
    for rung in (1, 2):
        for t in by_rung[rung]:
            # A promotion reruns its configuration's params from one rung lower...
            earlier = trials[t.user_attrs[PROMOTED_FROM_ATTR]]
            assert earlier.user_attrs[RUNG_ATTR] == rung - 1
            assert earlier.params == t.params
            assert t.user_attrs[CONFIG_ATTR] == earlier.user_attrs[CONFIG_ATTR]
            # ...chosen among the best 1/eta of the results there when it was enqueued.
            before = [
                e
                for e in by_rung[rung - 1]
                if e.datetime_complete is not None and e.datetime_complete <= t.datetime_start
            ]
            ranked = sorted(before, key=lambda e: e.value)
            assert earlier in ranked[: len(ranked) // 3]
    assert study.best_trial.user_attrs[RUNG_ATTR] == 2
    results = (toy_sweep.tmp / "multirun" / "optimization_results.yaml").read_text()
    assert f"best_trial: {study.best_trial.number}" in results
    assert "rungs:" in results and "budget: 9" in results


def test_fidelity_settings_that_cannot_work_are_usage_errors(toy_sweep, capfd) -> None:
    assert toy_sweep.run(FIDELITY_ARGS[0], "hydra/sweeper/pruner=median") == 2
    assert "would never act: add hydra/sweeper/pruner=none" in _said(capfd)
    assert toy_sweep.run(*FIDELITY_ARGS, "steps=choice(1,2)") == 2
    assert "fidelity.key=steps is also in the search space" in _said(capfd)
    wrong_key = "hydra.sweeper.fidelity={key: stepz, min: 1, max: 9}"
    assert toy_sweep.run(wrong_key, FIDELITY_ARGS[1]) == 2
    assert "stepz" in _said(capfd)
    assert not (toy_sweep.tmp / "optuna.db").exists() or toy_sweep.study().trials == []


def test_warm_start_trials_run_first_and_once(toy_sweep) -> None:
    warm = "hydra.sweeper.enqueue_trials=[{x: 0.3, y: 0}, {x: -0.5}]"
    assert toy_sweep.run(warm, n_trials=3) == 0
    first, second, third = toy_sweep.study().trials
    assert first.params == {"x": 0.3, "y": 0}
    assert second.params["x"] == -0.5  # y left to the sampler
    assert first.user_attrs["warm_start"] and "warm_start" not in third.user_attrs
    assert toy_sweep.run(warm, n_trials=5) == 0  # joining the study enqueues nothing more
    assert [t.params["x"] for t in toy_sweep.study().trials].count(0.3) == 1


@pytest.mark.parametrize(
    ("trials", "message"),
    [
        ("[{z: 0.1}]", "names ['z'], not sampled params"),
        ("[{x: 5.0}]", "enqueue_trials[0].x=5.0 is outside"),
        ("{x: 0.1}", "must be a list of param mappings"),
    ],
)
def test_bad_warm_start_trials_are_usage_errors(toy_sweep, capfd, trials, message) -> None:
    assert toy_sweep.run(f"hydra.sweeper.enqueue_trials={trials}") == 2
    assert message in _said(capfd)


def test_an_interrupted_run_is_queued_again_at_its_own_rung() -> None:
    study = optuna.create_study()
    trial = study.ask(X)
    promoted = {RUNG_ATTR: 1, BUDGET_ATTR: 3, CONFIG_ATTR: 0, PROMOTED_FROM_ATTR: 0}
    for key, value in {**promoted, "worker": "gone"}.items():
        trial.set_user_attr(key, value)
    sweeper_module._requeue(study, [trial], why="was interrupted")
    again = study.ask(X)  # the next worker to ask runs it: same params, same rung
    assert again.params == trial.params
    assert again.user_attrs == {**promoted, "requeued_from": trial.number}


def test_two_worker_processes_promote_in_one_study(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    run_worker_processes(
        tmp_path,
        "sleep=0.05",
        *FIDELITY_ARGS,
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=shared",
        "hydra.sweeper.n_trials=12",
    )
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert len({t.user_attrs[WORKER_ATTR] for t in trials}) == 2  # both ran runs
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    promoted = [t for t in trials if t.user_attrs[RUNG_ATTR] > 0]
    assert promoted, "a promotion enqueued by either worker ran"
    for t in promoted:  # whichever worker ran it, it reran its configuration one rung up
        earlier = trials[t.user_attrs[PROMOTED_FROM_ATTR]]
        assert earlier.params == t.params
        assert earlier.user_attrs[RUNG_ATTR] == t.user_attrs[RUNG_ATTR] - 1
        assert t.user_attrs["toy_steps"] == FIDELITY.budgets[t.user_attrs[RUNG_ATTR]]
