"""best-eval end to end on a tiny synthetic study recorded in tmp_path stores."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from hydra_cli import run_hydra_main, run_train_cli
from optuna.trial import create_trial

from data import TensorBatchLoader, channel_stats
from hpo.retest import best_eval
from hpo.retest.best_trial import (
    BestEvalError,
    TrialRecord,
    load_record,
    load_study,
)
from hpo.tracking.registry import champion_version, load_champion
from hpo.tracking.runs import tracking_client
from hpo.tracking.settings import TrackingSettings
from hpo.training.loop import FitResult, TrainSettings, evaluate, fit, predict
from hpo.training.precision import FP32, Precision, resolve_precision
from models import FlipTTA, RawPixelClassifier

STUDY = "tiny"


@dataclass(frozen=True)
class Stores:
    root: Path
    storage: str
    mlflow: str

    @property
    def settings(self) -> TrackingSettings:
        return TrackingSettings(uri=self.mlflow)

    def best_eval_args(self, *extra: str) -> list[str]:
        return [
            f"study={STUDY}",
            f"storage={self.storage}",
            f"tracking.uri={self.mlflow}",
            f"reports_dir={self.root}/reports",
            f"hydra.run.dir={self.root}/outputs",
            *extra,
        ]


def _sweep(root: Path, monkeypatch: pytest.MonkeyPatch, *extra: str, study: str = STUDY) -> Stores:
    stores = Stores(root, f"sqlite:///{root}/optuna.db", f"sqlite:///{root}/mlflow.db")
    code = run_train_cli(
        monkeypatch,
        "-m",
        "hydra/sweeper=optuna",
        "debug=tiny",
        # Out of the default space (it samples them), at debug=tiny's sizes.
        "model.width=8",
        "model.depth=2",
        "trainer.batch_size=64",
        "optimizer.weight_decay=0",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.storage={stores.storage}",
        f"tracking.uri={stores.mlflow}",
        f"hydra.sweep.dir={root}/multirun",
        "hydra.sweeper.direction=maximize",
        *extra,
    )
    assert code == 0
    return stores


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    """One tiny two-trial study shared by the read-only tests of this module."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _sweep(tmp_path_factory.mktemp("study"), monkeypatch)


def _snapshot(stores: Stores) -> list[tuple]:
    study = load_study(STUDY, stores.storage)
    return [
        (t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs) for t in study.trials
    ]


def test_best_eval_reports_registers_and_leaves_the_study_alone(stores, monkeypatch) -> None:
    before = _snapshot(stores)
    assert run_hydra_main(monkeypatch, best_eval.main, *stores.best_eval_args()) == 0
    assert _snapshot(stores) == before  # never writes into the study

    study = load_study(STUDY, stores.storage)
    report = json.loads((stores.root / f"reports/{STUDY}/report.json").read_text())
    assert report["trial"] == study.best_trial.number
    assert report["params"] == study.best_trial.params
    assert report["val_acc"] == pytest.approx(study.best_value)
    test = report["test"]
    confusion = torch.tensor(test["confusion"])
    assert test["num_samples"] == int(confusion.sum()) == 256
    assert test["accuracy"] == pytest.approx(float(confusion.diag().sum()) / 256)
    assert test["accuracy_ci95"][0] <= test["accuracy"] <= test["accuracy_ci95"][1]
    assert [c["support"] for c in test["per_class"]] == confusion.sum(dim=1).tolist()
    assert report["test_acc_minus_baseline"] == pytest.approx(test["accuracy"] - 0.9017)
    assert report["registry"]["champion"] is True
    for name in ("confusion_matrix", "test_predictions", "learning_curves"):
        assert (stores.root / f"reports/{STUDY}/{name}.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (stores.root / f"reports/{STUDY}/report.md").read_text()
    assert f"**Test accuracy: {test['accuracy']:.4f}**" in markdown

    client = tracking_client(stores.mlflow)
    run = client.get_run(report["mlflow_run_id"])
    assert run.info.run_name == "best-eval"
    assert run.data.metrics["test/acc"] == pytest.approx(test["accuracy"])
    assert run.data.tags["trial_run_id"] == report["trial_run_id"]
    assert run.data.tags["study_parent_run_id"] == report["study_parent_run_id"]
    assert report["trial_run_id"] in run.data.tags["mlflow.note.content"]
    version = champion_version(client, "fashion-mnist-cnn")
    assert version is not None and version.run_id == run.info.run_id
    assert float(version.tags["test_acc"]) == pytest.approx(test["accuracy"])

    # A second retest: identical numbers, a second run, the first one untouched.
    assert run_hydra_main(monkeypatch, best_eval.main, *stores.best_eval_args()) == 0
    again = json.loads((stores.root / f"reports/{STUDY}/report.json").read_text())
    assert again["test"] == report["test"]
    assert again["mlflow_run_id"] != report["mlflow_run_id"]
    assert client.get_run(report["mlflow_run_id"]).data.metrics == run.data.metrics
    # Equal accuracy is no improvement: the champion stays.
    assert again["registry"]["champion"] is False
    assert champion_version(client, "fashion-mnist-cnn").version == version.version
    assert _snapshot(stores) == before


def test_reloaded_checkpoint_predicts_exactly_like_the_trial(stores) -> None:
    study = load_study(STUDY, stores.storage)
    record = load_record(stores.settings, STUDY, study.best_trial)
    model = instantiate(record.config.model)
    model.load_state_dict(record.state_dict)
    splits = instantiate(record.config.data).setup()
    assert splits.mean == pytest.approx(record.meta["mean"])
    batches = splits.val_loader(batch_size=256, device="cpu")
    precision = resolve_precision(record.config.trainer.precision, torch.device("cpu"))
    _, acc = evaluate(model, batches, precision)
    assert acc == study.best_value  # the very accuracy the trial reported
    # The raw-pixel wrapper gives the same logits from 0-255 pixels.
    x, _ = next(iter(batches))
    wrapped = RawPixelClassifier(model, mean=record.meta["mean"], std=record.meta["std"]).eval()
    raw = splits.val_images[: x.shape[0]].float()
    torch.testing.assert_close(wrapped(raw), model.eval()(x), rtol=1e-4, atol=1e-4)


@dataclass
class FitCall:
    """One `fit` call made by best-eval, with the live weights right after it."""

    train_batches: TensorBatchLoader
    val_batches: object
    settings: TrainSettings
    result: FitResult
    live_state: dict[str, torch.Tensor]


def _spy_on_fit(monkeypatch: pytest.MonkeyPatch) -> list[FitCall]:
    """Record every `fit` best-eval makes (the real one still trains)."""
    calls: list[FitCall] = []

    def spy(model, train_batches, val_batches, **kwargs):
        result = fit(model, train_batches, val_batches, **kwargs)
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        calls.append(FitCall(train_batches, val_batches, kwargs["settings"], result, live))
        return result

    monkeypatch.setattr(best_eval, "fit", spy)
    return calls


def test_retrain_trains_on_all_training_images(stores, monkeypatch, tmp_path) -> None:
    calls = _spy_on_fit(monkeypatch)
    args = stores.best_eval_args(
        "retrain=true", "epochs=1", "register=false", f"reports_dir={tmp_path}"
    )
    assert run_hydra_main(monkeypatch, best_eval.main, *args) == 0
    report = json.loads((tmp_path / f"{STUDY}/report.json").read_text())
    assert report["weights"] == "retrain"
    assert "registry" not in report

    record = load_record(stores.settings, STUDY, load_study(STUDY, stores.storage).best_trial)
    splits = instantiate(record.config.data).setup()
    every = len(splits.train_labels) + len(splits.val_labels)  # 512 + 256
    [call] = calls  # the trials' own loop, once, with no validation
    assert call.val_batches is None
    assert call.train_batches.num_samples == every
    assert len(call.train_batches) == every // 64  # full batches of trainer.batch_size=64
    precision = resolve_precision(record.config.trainer.precision, torch.device("cpu"))
    assert call.settings.precision == precision  # the trial's autocast (and gradient scaler)
    assert call.settings.epochs == len(call.result.history) == 1
    assert call.result.best_epoch == 1 and "val/acc" not in call.result.best_metrics
    # Trained from scratch, not the trial's checkpoint reloaded.
    assert any(not torch.equal(call.result.best_state[k], v) for k, v in record.state_dict.items())

    # What was tested: the kept weights, normalised with the statistics of all the images.
    model = instantiate(record.config.model)
    model.load_state_dict(call.result.best_state)
    mean, std = channel_stats(torch.cat([splits.train_images, splits.val_images]))
    assert (mean, std) != (splits.mean, splits.std)
    images, labels = instantiate(record.config.data).load_test()
    test = TensorBatchLoader(images, labels, batch_size=1000, mean=mean, std=std, shuffle=False)
    loss, acc = evaluate(model, test, precision)
    assert report["test"]["accuracy"] == acc
    assert report["test"]["loss"] == pytest.approx(loss, rel=1e-5)
    assert acc > 0.3  # learnable synthetic signal; chance is 0.1


def test_retrain_uses_the_trials_precision_and_average_and_trains_every_epoch(
    compose_cfg, monkeypatch
) -> None:
    # fp16 autocast runs on this torch's CPU too: the retrain is really loss-scaled here.
    cfg = compose_cfg(
        "data.num_train=96",  # + 32 validation images: 2 batches of 64 an epoch
        "data.num_val=32",
        "trainer.epochs=2",
        "trainer.batch_size=64",
        "trainer.ema=0.9",
        "trainer.patience=1",
        "model.width=8",
    )
    record = TrialRecord(STUDY, create_trial(value=0.5), "run", None, cfg, {}, {}, [])
    calls = _spy_on_fit(monkeypatch)
    scalers: list[torch.amp.GradScaler | None] = []
    make_scaler = Precision.grad_scaler
    monkeypatch.setattr(
        Precision, "grad_scaler", lambda self: scalers.append(make_scaler(self)) or scalers[-1]
    )
    fp16 = Precision("fp16", "cpu")

    retested = best_eval._retrain(record, None, torch.device("cpu"), fp16)

    [call] = calls
    assert call.val_batches is None and call.settings.precision is fp16
    assert len(scalers) == 1 and isinstance(scalers[0], torch.amp.GradScaler)  # fit made it
    assert call.settings.ema == 0.9
    # Patience has no validation to stop on: every epoch trains (a trial would stop).
    assert call.settings.patience is None and len(call.result.history) == 2
    assert retested.source == "retrain" and retested.precision is fp16
    tested = retested.model.state_dict()
    assert all(torch.equal(tested[k].cpu(), v) for k, v in call.result.best_state.items())
    # The average's weights are tested, not the live ones fit left in the network.
    assert any(
        v.is_floating_point() and not torch.equal(tested[k].cpu(), call.live_state[k].cpu())
        for k, v in call.result.best_state.items()
    )


def test_tta_trial_is_tested_and_registered_with_the_flip(tmp_path, monkeypatch) -> None:
    # fp32 throughout, so the registered model (always fp32) must match the report exactly.
    stores = _sweep(
        tmp_path, monkeypatch, "trainer.tta=true", "trainer.ema=0.9", "trainer.precision=fp32"
    )
    assert run_hydra_main(monkeypatch, best_eval.main, *stores.best_eval_args()) == 0
    report = json.loads((tmp_path / f"reports/{STUDY}/report.json").read_text())
    assert report["tta"] is True

    study = load_study(STUDY, stores.storage)
    record = load_record(stores.settings, STUDY, study.best_trial)
    net = instantiate(record.config.model)
    net.load_state_dict(record.state_dict)  # the average's weights, in the bare model's keys
    net.eval()
    splits = instantiate(record.config.data).setup()
    _, val_acc = evaluate(FlipTTA(net), splits.val_loader(batch_size=256, device="cpu"), FP32)
    assert val_acc == study.best_value  # what the trial validated: average + flip

    champion = load_champion(stores.mlflow, "fashion-mnist-cnn")
    images, labels = instantiate(record.config.data).load_test()
    with torch.inference_mode():
        served = champion(images.float())
    assert (served.argmax(1) == labels).double().mean().item() == report["test"]["accuracy"]
    plain = RawPixelClassifier(net, mean=record.meta["mean"], std=record.meta["std"]).eval()
    x = images[:8].float()
    with torch.inference_mode():
        torch.testing.assert_close(served[:8], (plain(x) + plain(x.flip(-1))) / 2)
        assert not torch.allclose(served[:8], plain(x), atol=1e-4)

    # best-eval's own `tta=false` overrides the trial's.
    args = stores.best_eval_args("tta=false", "register=false", f"reports_dir={tmp_path}/plain")
    assert run_hydra_main(monkeypatch, best_eval.main, *args) == 0
    without = json.loads((tmp_path / f"plain/{STUDY}/report.json").read_text())
    assert without["tta"] is False
    with torch.inference_mode():
        plain_loss = torch.nn.functional.cross_entropy(plain(images.float()), labels).item()
    assert without["test"]["loss"] == pytest.approx(plain_loss, rel=1e-5)
    assert without["test"]["loss"] != pytest.approx(report["test"]["loss"], rel=1e-4)


def _ranked(stores: Stores) -> list:
    study = load_study(STUDY, stores.storage)
    return sorted(study.trials, key=lambda t: (-(t.value or 0.0), t.number))


def test_ensemble_tests_the_best_trials_probabilities_averaged(stores, monkeypatch, tmp_path):
    args = stores.best_eval_args("ensemble=2", "register=false", f"reports_dir={tmp_path}")
    assert run_hydra_main(monkeypatch, best_eval.main, *args) == 0
    report = json.loads((tmp_path / f"{STUDY}/report.json").read_text())
    best, second = _ranked(stores)[:2]
    assert report["ensemble"] == [f"trial {best.number}", f"trial {second.number}"]
    assert report["trial"] == best.number and report["weights"] == "checkpoint"

    # What was tested: both trials' own weights, their softmax averaged (then argmax).
    records = [load_record(stores.settings, STUDY, t) for t in (best, second)]
    images, labels = instantiate(records[0].config.data).load_test()
    probs = []
    for record in records:
        model = instantiate(record.config.model)
        model.load_state_dict(record.state_dict)
        test = TensorBatchLoader(
            images,
            labels,
            batch_size=1000,
            mean=record.meta["mean"],
            std=record.meta["std"],
            shuffle=False,
        )
        precision = resolve_precision(record.config.trainer.precision, torch.device("cpu"))
        logits, _ = predict(model, test, precision)
        probs.append(logits.softmax(1))
    averaged = (probs[0] + probs[1]) / 2
    assert report["test"]["accuracy"] == (averaged.argmax(1) == labels).double().mean().item()
    # The test loss is the averaged probabilities' log loss, neither member's (the tiny nets
    # may agree on every argmax, but not on every probability).
    picked = torch.arange(len(labels)), labels.long()
    assert report["test"]["loss"] == pytest.approx(-averaged[picked].log().mean().item(), rel=1e-5)
    for member in probs:
        assert report["test"]["loss"] != pytest.approx(
            -member[picked].log().mean().item(), rel=1e-3
        )
    markdown = (tmp_path / f"{STUDY}/report.md").read_text()
    assert f"Models averaged: trial {best.number}; trial {second.number}" in markdown
    run = tracking_client(stores.mlflow).get_run(report["mlflow_run_id"])
    assert run.data.tags["ensemble"] == f"trial {best.number}; trial {second.number}"


def test_ensemble_with_retrain_joins_the_retrain_and_the_best_trials_weights(
    stores, monkeypatch, tmp_path
) -> None:
    calls = _spy_on_fit(monkeypatch)
    args = stores.best_eval_args(
        "retrain=true", "epochs=1", "ensemble=2", "register=false", f"reports_dir={tmp_path}"
    )
    assert run_hydra_main(monkeypatch, best_eval.main, *args) == 0
    report = json.loads((tmp_path / f"{STUDY}/report.json").read_text())
    best = _ranked(stores)[0]
    seed = int(load_record(stores.settings, STUDY, best).config.seed)
    assert len(calls) == 1  # one retrain; the other member is the trial's checkpoint
    assert report["ensemble"] == [
        f"trial {best.number} retrained on 768 images (seed {seed})",
        f"trial {best.number}",
    ]
    assert report["weights"] == "retrain"


def test_ensemble_below_one_is_refused_before_any_work(stores, monkeypatch, capfd) -> None:
    calls = _spy_on_fit(monkeypatch)
    args = stores.best_eval_args("ensemble=0", "retrain=true", "register=false")
    assert run_hydra_main(monkeypatch, best_eval.main, *args) == 2
    out, err = capfd.readouterr()
    assert "ensemble=0: it must be 1 (one model) or more" in out + err and "Traceback" not in err
    assert calls == []


def test_cli_errors_exit_2_with_the_message(stores, monkeypatch, capfd) -> None:
    code = run_hydra_main(monkeypatch, best_eval.main, *stores.best_eval_args("study=nope"))
    assert code == 2  # a usage error: the study named does not exist
    out, err = capfd.readouterr()
    assert "no study 'nope'" in out + err and "Traceback" not in err


def test_mismatching_checkpoint_names_run_and_file(stores, monkeypatch) -> None:
    study = load_study(STUDY, stores.storage)
    record = load_record(stores.settings, STUDY, study.best_trial)
    record.config.model.width = 16  # the weights are for width 8
    with pytest.raises(
        BestEvalError,
        match=rf"run {record.run_id}: checkpoints/best_state_dict.pt "
        "does not fit",
    ):
        best_eval.rebuild(record, torch.device("cpu"), FP32)


def test_a_validated_retrain_with_the_trials_seed_reproduces_the_trial(stores) -> None:
    # bench/retrain_check.py's retrain: the 50k-split recipe scored on validation. With the
    # trial's own seed it must be the trial again (same split, batches, TTA, precision);
    # another seed trains another model on the same split.
    trial = load_study(STUDY, stores.storage).best_trial
    record = load_record(stores.settings, STUDY, trial)
    precision = resolve_precision(record.config.trainer.precision, torch.device("cpu"))
    cpu = torch.device("cpu")
    same, result = best_eval.retrain(
        record, epochs=None, device=cpu, precision=precision, validate=True
    )
    assert len(result.history) == record.config.trainer.epochs
    assert result.best_metrics["val/acc"] == pytest.approx(trial.value)
    assert same.source == "retrain" and same.precision == precision
    _, other = best_eval.retrain(
        record,
        epochs=None,
        device=cpu,
        precision=precision,
        validate=True,
        seed=record.config.seed + 1,
    )
    assert other.best_state.keys() == result.best_state.keys()
    assert any(not torch.equal(other.best_state[k], v) for k, v in result.best_state.items())


def _run_bench(
    script: str, stores, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run bench/<script> on the study as users run it; its output and JSON summary."""
    out = tmp_path / f"{script}.json"
    done = subprocess.run(
        [
            sys.executable,
            f"bench/{script}",
            *("--study", STUDY, "--storage", stores.storage, "--tracking-uri", stores.mlflow),
            *args,
            *("--json", str(out)),
        ],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(out.read_text())


def test_the_retrain_check_bench_reports_each_seed_against_the_trial(stores, tmp_path) -> None:
    done, summary = _run_bench("retrain_check.py", stores, tmp_path, "--seeds", "5", "6")
    trial = load_study(STUDY, stores.storage).best_trial
    assert (summary["trial"], summary["trial_val_acc"]) == (trial.number, trial.value)
    assert [r["seed"] for r in summary["retrains"]] == [5, 6]
    for run in summary["retrains"]:
        assert run["epochs"] == 2 and 0.0 <= run["final_val_acc"] <= run["best_val_acc"] <= 1.0
    assert "Retrain check" in done.stdout


def test_the_tta_check_bench_scores_each_view_set_against_no_views(stores, tmp_path) -> None:
    _, summary = _run_bench("tta_check.py", stores, tmp_path, "--trials", "2")
    study = load_study(STUDY, stores.storage)
    best, second = sorted(study.trials, key=lambda t: (-(t.value or 0.0), t.number))[:2]
    # Each trial alone, best first, then the two averaged.
    assert [r["trials"] for r in summary["results"]] == [
        [best.number],
        [second.number],
        [best.number, second.number],
    ]
    assert summary["results"][2]["models"] == "best 2 averaged"
    for result, trial in zip(summary["results"], (best, second), strict=False):
        assert result["searched_val_acc"] == trial.value
        views = result["views"]
        # The trial validated with the views of its own trainer.tta: its value is one of these.
        tta = bool(load_record(stores.settings, STUDY, trial).config.trainer.tta)
        assert views["flip" if tta else "none"]["val_acc"] == pytest.approx(trial.value, abs=1e-6)
    for result in summary["results"]:
        views = result["views"]
        assert list(views) == ["none", "flip", "flip + shift 1"]
        assert views["none"]["fixed"] == views["none"]["broken"] == 0  # the baseline itself
        # Paired counts add up: accuracy(view) - accuracy(none) = (fixed - broken) / images.
        for view in views.values():
            gain = (view["fixed"] - view["broken"]) / result["images"]
            assert view["val_acc"] - views["none"]["val_acc"] == pytest.approx(gain, abs=1e-6)
