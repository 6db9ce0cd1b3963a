"""Finding a study's best trial and reading back what its MLflow run recorded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from hpo.retest.best_trial import (
    BestEvalError,
    TrialRecord,
    choose_trial,
    load_record,
    load_study,
    ranked_trials,
)
from hpo.tracking import recording
from hpo.tracking.runs import open_run, open_study_run
from hpo.tracking.settings import TrackingSettings


def _study_with(directions: list[str], values: list[list[float]]) -> optuna.Study:
    study = optuna.create_study(directions=directions)
    for v in values:
        study.add_trial(
            create_trial(values=v, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})
        )
    return study


@pytest.mark.parametrize(
    ("directions", "values", "index", "expected"),
    [
        (["maximize"], [[0.8], [0.9], [0.85]], 0, 1),
        (["minimize"], [[0.8], [0.9], [0.7]], 0, 2),
        # Pareto front of (acc max, params min): trials 0, 1 and 3; 2 is dominated by 1.
        (["maximize", "minimize"], [[0.9, 500], [0.8, 100], [0.7, 200], [0.95, 900]], 0, 3),
        (["maximize", "minimize"], [[0.9, 500], [0.8, 100], [0.7, 200], [0.95, 900]], 1, 1),
    ],
)
def test_choose_trial(directions, values, index, expected) -> None:
    assert choose_trial(_study_with(directions, values), index).number == expected


def test_choose_trial_errors() -> None:
    with pytest.raises(BestEvalError, match="objective_index=2"):
        choose_trial(_study_with(["maximize", "minimize"], [[0.9, 1.0]]), 2)
    empty = optuna.create_study(study_name="empty")
    with pytest.raises(
        BestEvalError, match=r"'empty' has no completed trial yet; run `make sweep`"
    ):
        choose_trial(empty)


@pytest.mark.parametrize(
    ("directions", "values", "count", "expected"),
    [
        (["maximize"], [[0.8], [0.9], [0.85], [0.9]], 3, [1, 3, 2]),  # ties: earlier first
        (["minimize"], [[0.8], [0.9], [0.7]], 2, [2, 0]),
        (["maximize"], [[0.8], [0.9]], 1, [1]),
        # The Pareto pick first (best params count), then the rest by that objective.
        (["maximize", "minimize"], [[0.9, 500], [0.8, 100], [0.7, 200], [0.95, 900]], 3, [1, 2, 0]),
    ],
)
def test_ranked_trials_starts_with_the_chosen_trial(directions, values, count, expected) -> None:
    study = _study_with(directions, values)
    index = 1 if len(directions) > 1 else 0
    assert [t.number for t in ranked_trials(study, count, index)] == expected


def test_ranked_trials_skips_runs_below_the_top_budget(caplog) -> None:
    """Under hydra.sweeper.fidelity a lower-rung run ends PRUNED with its (here higher)
    value: it never joins an ensemble, whose members all trained with the full budget."""
    study = _study_with(["maximize"], [[0.90], [0.91]])
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED, intermediate_values={7: 0.99}, params={}, distributions={}
        )
    )
    with caplog.at_level(logging.WARNING):
        ranked = ranked_trials(study, 3)
    assert [t.number for t in ranked] == [1, 0]
    assert "3 of the best trials asked for, but study" in caplog.text
    assert "has 2 completed (top-budget) trial(s): using 2" in caplog.text
    with pytest.raises(BestEvalError, match="ensemble=0"):
        ranked_trials(study, 0)


def test_load_study_opens_only_what_exists(tmp_path: Path) -> None:
    with pytest.raises(BestEvalError, match=r"no Optuna storage at .*run `make sweep` first"):
        load_study("x", f"sqlite:///{tmp_path}/none.db")
    assert not (tmp_path / "none.db").exists()  # looking did not create a database
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="there", storage=url)
    assert load_study("there", url).study_name == "there"
    with pytest.raises(BestEvalError, match=r"no study 'nope' in .*studies there: \['there'\]"):
        load_study("nope", url)


def test_with_no_study_given_the_most_recent_is_retested_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hpo.retest.best_trial")
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="empty", storage=url)  # no trial: counts as oldest
    for name in ("fmnist-quick", "fmnist-accuracy", "fmnist-older"):
        study = optuna.create_study(study_name=name, storage=url)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    # The last one swept is the most recent, whatever its name.
    assert load_study(None, url).study_name == "fmnist-older"
    assert "No study given: retesting 'fmnist-older', the most recent of the 4" in caplog.text
    assert "the others: empty, fmnist-accuracy, fmnist-quick" in caplog.text
    assert "STUDY=<name>" in caplog.text


def test_with_no_study_given_an_empty_storage_says_to_sweep(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="x", storage=url)
    optuna.delete_study(study_name="x", storage=url)
    with pytest.raises(BestEvalError, match=r"no study in .* yet; run `make sweep` first"):
        load_study(None, url)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> TrackingSettings:
    """One MLflow SQLite store for the module: creating one takes MLflow seconds."""
    return TrackingSettings(uri=f"sqlite:///{tmp_path_factory.mktemp('best')}/mlflow.db")


def _trial(number: int) -> FrozenTrial:
    trial = create_trial(value=0.7, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})
    trial.number = number
    return trial


STATE = {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
META = {"best_epoch": 2, "mean": 0.3, "std": 0.35, "class_names": ["a", "b"]}


def _record_trial(settings: TrackingSettings, study: str, number: int, state: object) -> str:
    """A trial's child run as a training records it: config, checkpoint, meta, metrics."""
    parent = open_study_run(settings, study, {})
    tags = {"study_name": study, "trial_number": str(number)}
    with open_run(settings, parent_run_id=parent.run_id, tags=tags) as run:
        assert run is not None
        run.log_text("model:\n  width: 8\n", recording.CONFIG_ARTIFACT)
        for epoch, acc in enumerate([0.6, 0.7, 0.65], start=1):
            run.log_metrics({"val/acc": acc, "val/loss": 1 - acc}, step=epoch)
        if state is not None:
            run.log_bytes(lambda path: torch.save(state, path), recording.CHECKPOINT_ARTIFACT)
            run.log_text(json.dumps(META), recording.CHECKPOINT_META_ARTIFACT)
        return run.run_id


def test_load_record_reads_back_the_trials_run(settings) -> None:
    run_id = _record_trial(settings, "recorded", 4, STATE)
    record = load_record(settings, "recorded", _trial(4))
    assert record.run_id == run_id and record.parent_run_id is not None
    assert record.config.model.width == 8
    torch.testing.assert_close(record.state_dict, STATE)
    assert record.meta == META
    assert [h["val/acc"] for h in record.history] == [0.6, 0.7, 0.65]
    assert record.val_acc == 0.7  # the best epoch's, not the last one's


def test_a_trial_without_a_run_names_trial_store_and_likely_cause(settings) -> None:
    with pytest.raises(BestEvalError, match=r"trial 9 of study 'recorded' has no MLflow run in"):
        load_record(settings, "recorded", _trial(9))


def test_a_run_without_checkpoint_names_run_artifact_and_fix(settings) -> None:
    run_id = _record_trial(settings, "no-weights", 0, None)
    with pytest.raises(
        BestEvalError,
        match=rf"run {run_id} has no artifact checkpoints/best_state_dict\.pt.*retrain=true",
    ):
        load_record(settings, "no-weights", _trial(0))


def test_a_checkpoint_that_is_no_state_dict_is_named(settings) -> None:
    run_id = _record_trial(settings, "odd-weights", 0, [1, 2, 3])
    with pytest.raises(
        BestEvalError, match=rf"run {run_id}: checkpoints/best_state_dict\.pt cannot be loaded"
    ):
        load_record(settings, "odd-weights", _trial(0))


@pytest.mark.parametrize(
    ("best_epoch", "accs", "expected"),
    [(2, [0.6, 0.7, 0.65], 0.7), (0, [0.6, 0.7, 0.65], 0.7), (5, [0.6, 0.8], 0.8), (1, [], None)],
)
def test_val_acc_is_the_best_epochs(best_epoch, accs, expected) -> None:
    record = TrialRecord(
        study_name="s",
        trial=_trial(0),
        run_id="r",
        parent_run_id=None,
        config=None,  # type: ignore[arg-type]
        state_dict={},
        meta={"best_epoch": best_epoch},
        history=[{"val/acc": a} for a in accs],
    )
    assert record.val_acc == expected
