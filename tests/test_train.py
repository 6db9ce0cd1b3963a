"""train.py end to end on synthetic data, with a tmp_path MLflow store."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from hydra.utils import instantiate

import train
from hpo.config_checks import ConfigError
from hpo.tracking import recording
from hpo.tracking.runs import TrackingUnavailableError, tracking_client
from hpo.training.loop import TrainingDivergedError
from hpo.training.precision import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]
EPOCH_METRICS = (
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "lr",
    "epoch_seconds",
    "images_per_second",
)


def _only_run(uri: str):
    client = tracking_client(uri)
    experiment = client.get_experiment_by_name("fashion-mnist")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_a_run_records_everything(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("model.width=12")  # not debug=tiny's 8: the override must show
    value = train.train(cfg, ("model.width=12",))
    client, run = _only_run(cfg.tracking.uri)

    assert run.info.status == "FINISHED"
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(run.data.metrics["best/val/acc"])
    assert value > 0.3  # synthetic data has a learnable signal: chance is 0.1
    for name in EPOCH_METRICS:
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [1, 2], name
    assert run.data.params["model.width"] == "12"
    assert run.data.params["optimizer.lr"] == str(cfg.optimizer.lr)
    assert int(run.data.params["model.num_parameters"]) == run.data.metrics["model/params"] > 0
    assert run.data.tags["hydra_overrides"] == "model.width=12"
    assert run.data.tags["device"] == "cpu"
    # The precision `auto` resolved to, as a param and a tag; the weights stay fp32.
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert run.data.params["trainer.precision"] == "auto"
    assert run.data.params["precision"] == run.data.tags["precision"] == expected
    assert run.data.tags["torch_version"] == torch.__version__
    assert run.data.tags["git_commit"]

    artifacts = tmp_path / "artifacts"
    client.download_artifacts(run.info.run_id, "", str(artifacts))
    for name in (
        recording.CONFIG_ARTIFACT,
        recording.CHECKPOINT_ARTIFACT,
        recording.CHECKPOINT_META_ARTIFACT,
        recording.CURVES_ARTIFACT,
        recording.PREDICTIONS_ARTIFACT,
    ):
        assert (artifacts / name).stat().st_size > 0, name
    assert (artifacts / "figures/learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "width: 12" in (artifacts / recording.CONFIG_ARTIFACT).read_text()
    # Artifacts live beside the SQLite file, not in the working directory.
    assert urlparse(run.info.artifact_uri).path.startswith(f"{tmp_path}/mlartifacts/")

    # The checkpoint reloads safely and reproduces the logged best validation accuracy.
    state = recording.load_state_dict(artifacts / recording.CHECKPOINT_ARTIFACT)
    model = instantiate(cfg.model)
    model.load_state_dict(state)
    splits = instantiate(cfg.data).setup()
    batches = splits.val_loader(batch_size=256, device="cpu")
    from hpo.training.loop import evaluate
    from hpo.training.precision import resolve_precision

    precision = resolve_precision(cfg.trainer.precision, torch.device("cpu"))
    assert all(t.dtype == torch.float32 for t in state.values() if t.is_floating_point())
    assert evaluate(model, batches, precision)[1] == pytest.approx(value)


def test_objective_can_be_loss_or_several(compose_cfg) -> None:
    cfg = compose_cfg("objective=[val/loss,model/params]", "tracking.enabled=false")
    loss, params = train.train(cfg)
    assert math.isfinite(loss) and loss > 0
    assert params == sum(p.numel() for p in instantiate(cfg.model).parameters())


def test_tracking_disabled_writes_no_store(compose_cfg, tmp_path: Path) -> None:
    train.train(compose_cfg("tracking.enabled=false"))
    assert not (tmp_path / "mlflow.db").exists()


def test_mlflow_env_var_is_respected(compose_cfg, tmp_path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path}/from_env.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = compose_cfg(tiny=False)
    assert cfg.tracking.uri == uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert compose_cfg(tiny=False).tracking.uri == f"sqlite:///{ROOT}/mlflow.db"


def test_divergence_marks_the_run_failed(compose_cfg) -> None:
    cfg = compose_cfg("optimizer=sgd", "optimizer.lr=1e30", "scheduler=none")
    with pytest.raises(TrainingDivergedError):
        train.train(cfg)
    _, run = _only_run(cfg.tracking.uri)
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags["error"]


def test_unreachable_tracking_server_fails_before_training(compose_cfg) -> None:
    cfg = compose_cfg("tracking.uri=http://127.0.0.1:9")
    with pytest.raises(TrackingUnavailableError, match=r"127\.0\.0\.1:9.*tracking\.enabled=false"):
        train.train(cfg)


def test_bad_config_fails_before_anything_is_recorded(compose_cfg, tmp_path) -> None:
    with pytest.raises(ConfigError):
        train.train(compose_cfg("optimizer.lr=-1"))
    assert not (tmp_path / "mlflow.db").exists()


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/cli.db"}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "debug=tiny",
            "trainer.epochs=1",  # these check the command line, not training
            f"hydra.run.dir={tmp_path}/run",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )


def test_cli_reports_user_errors_without_a_traceback(tmp_path: Path) -> None:
    result = _cli("optimizer.lr=-1", "model.dropout=1.5", tmp_path=tmp_path)
    assert result.returncode == 2  # a usage error
    assert "optimizer.lr=-1 is invalid" in result.stderr + result.stdout
    assert "model.dropout=1.5 is invalid" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_cli_trains_and_exits_zero(tmp_path: Path) -> None:
    result = _cli("model=seed_cnn", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Best epoch 1" in result.stderr + result.stdout
    assert (tmp_path / "cli.db").exists()


def test_cli_trains_with_every_new_option_at_once(tmp_path: Path) -> None:
    options = (
        "trainer.tta=true",
        "trainer.ema=0.9",
        "scheduler=linear_warmup",
        "optimizer=sgd",
        "trainer.no_decay_norm_bias=true",
    )
    result = _cli(*options, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Best epoch 1" in result.stderr + result.stdout
    client = tracking_client(f"sqlite:///{tmp_path}/cli.db")
    experiment = client.get_experiment_by_name("fashion-mnist")
    (run,) = client.search_runs([experiment.experiment_id])
    # Config values, so recorded as params without anything added for them.
    params = run.data.params
    assert params["trainer.tta"] == "True" and params["trainer.ema"] == "0.9"
    assert params["trainer.no_decay_norm_bias"] == "True"
    assert params["scheduler._target_"] == "hpo.training.schedulers.linear_warmup"


@pytest.mark.parametrize("translate", [0, 1])
def test_ema_and_tta_checkpoint_reproduces_the_logged_accuracy(
    compose_cfg, tmp_path, translate
) -> None:
    cfg = compose_cfg("trainer.ema=0.9", "trainer.tta=true", f"trainer.tta_translate={translate}")
    value = train.train(cfg)
    client, run = _only_run(cfg.tracking.uri)
    path = client.download_artifacts(run.info.run_id, recording.CHECKPOINT_ARTIFACT, str(tmp_path))
    state = recording.load_state_dict(Path(path))
    model = instantiate(cfg.model)
    model.load_state_dict(state)  # the average, saved as the bare model's state_dict
    splits = instantiate(cfg.data).setup()
    batches = splits.val_loader(batch_size=256, device="cpu")
    from hpo.training.loop import evaluate
    from hpo.training.precision import resolve_precision
    from models import FlipTTA

    precision = resolve_precision(cfg.trainer.precision, torch.device("cpu"))
    assert evaluate(FlipTTA(model, translate), batches, precision)[1] == pytest.approx(value)
    if translate:  # the shifted views were what validation scored, not the flip alone
        assert evaluate(FlipTTA(model), batches, precision)[1] != pytest.approx(value)


def test_help_lists_choices_not_schemas() -> None:
    """`python train.py --help`: every group's options are things to choose; the typed
    schemas that trainer/ and tracking/ extend are not among them."""
    out = subprocess.run(
        [sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    groups = dict(
        line.split(": ", 1) for line in out.split("== Config ==")[0].splitlines() if ": " in line
    )
    assert groups["trainer"] == "default"
    assert groups["tracking"] == "mlflow, none"
    assert groups["experiment"] == "accuracy, quick"
    assert "base_" not in out.split("== Config ==")[0]
    assert "debug=tiny picks the size" in out
    assert "epochs: 6" in out  # the composed config follows


def _train_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_a_misspelt_key_gets_its_right_name_not_hydras_plus() -> None:
    done = _train_cli("model.widht=3", "optimizer.lr=0.1", "trainer.epochz=2")
    assert done.returncode == 2, done.stderr
    assert "did you mean model.width?" in done.stderr
    assert "did you mean trainer.epochs?" in done.stderr
    assert "optimizer.lr" not in done.stderr.split("invalid config:")[1]  # a right key
    assert "fix its name instead" in done.stderr


def test_other_failures_keep_their_own_message_and_exit_code(tmp_path: Path) -> None:
    done = _train_cli(f"data.root={tmp_path}/none", "tracking=none")
    assert done.returncode == 1, done.stderr
    assert "invalid config" not in done.stderr
