"""model=airbench through the project: config checks, the whitening hook in hpo.builders,
train.py end to end, and the checkpoint path best-eval takes (rebuild + load_state_dict)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

import train
from hpo import builders
from hpo.config_checks import ConfigError, check_config
from hpo.tracking import recording
from hpo.tracking.runs import tracking_client
from hpo.training.loop import evaluate
from hpo.training.precision import resolve_precision
from models import AirbenchNet

ROOT = Path(__file__).resolve().parents[1]
# compose_cfg runs debug=tiny, which gives this model its tiny widths (conf/debug/model/).
AIRBENCH = "model=airbench"
CPU = torch.device("cpu")


def test_whitening_images_are_a_seeded_sample_normalised_like_training_batches(
    compose_cfg,
) -> None:
    splits = instantiate(compose_cfg(AIRBENCH).data).setup()
    rng = torch.get_rng_state()
    images = builders.whitening_images(splits, seed=3, count=100)
    assert torch.equal(torch.get_rng_state(), rng)  # the weights' RNG stream is untouched
    assert images.shape == (100, 1, 28, 28) and images.dtype == torch.float32
    assert torch.equal(images, builders.whitening_images(splits, seed=3, count=100))
    assert not torch.equal(images, builders.whitening_images(splits, seed=4, count=100))
    # The train loader's conversion (data/loader.py), bit for bit, of the drawn uint8 images.
    pick = torch.randperm(len(splits.train_labels), generator=torch.Generator().manual_seed(3))
    raw = splits.train_images[pick[:100]].float()
    expected = raw.sub_(255.0 * splits.mean).div_(255.0 * splits.std)
    assert torch.equal(images, expected)
    # All of a small split when it holds fewer than `count` images.
    assert len(builders.whitening_images(splits, seed=0)) == len(splits.train_labels)


def test_builder_whitens_from_the_training_split(compose_cfg) -> None:
    cfg = compose_cfg(AIRBENCH)
    splits = instantiate(cfg.data).setup()
    net = builders.model(cfg, CPU, splits)
    assert isinstance(net, AirbenchNet)
    assert net.stem.weight.is_contiguous(memory_format=torch.channels_last)
    reference = instantiate(cfg.model)
    default = reference.stem.weight.clone()
    reference.init_whitening(builders.whitening_images(splits, cfg.seed))
    assert torch.equal(net.stem.weight, reference.stem.weight)
    assert not torch.equal(net.stem.weight, default)


def test_builder_without_training_images_warns(compose_cfg, caplog) -> None:
    cfg = compose_cfg(AIRBENCH)
    with caplog.at_level(logging.WARNING, logger="hpo.builders"):
        net = builders.model(cfg, CPU)
    assert "whiten=true but was built without training images" in caplog.text
    assert torch.equal(net.stem.weight, instantiate(cfg.model).stem.weight)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hpo.builders"):
        builders.model(compose_cfg(AIRBENCH, "model.whiten=false"), CPU)
    assert not caplog.text


def test_checkpoint_carries_the_whitening_to_a_rebuilt_model(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(AIRBENCH)
    value = train.train(cfg)
    client = tracking_client(cfg.tracking.uri)
    experiment = client.get_experiment_by_name("fashion-mnist")
    (run,) = client.search_runs([experiment.experiment_id])
    client.download_artifacts(run.info.run_id, "checkpoints", str(tmp_path))
    state = recording.load_state_dict(tmp_path / recording.CHECKPOINT_ARTIFACT)
    # What best-eval's checkpoint path does: instantiate the recorded config, load the weights.
    rebuilt = instantiate(cfg.model)
    rebuilt.load_state_dict(state)
    splits = instantiate(cfg.data).setup()
    reference = instantiate(cfg.model)
    reference.init_whitening(builders.whitening_images(splits, cfg.seed))
    assert torch.equal(rebuilt.stem.weight, reference.stem.weight)
    precision = resolve_precision(cfg.trainer.precision, CPU)
    batches = splits.val_loader(batch_size=256, device=CPU)
    assert evaluate(rebuilt, batches, precision)[1] == pytest.approx(value)


def test_config_checks_know_its_keys(compose_cfg) -> None:
    check_config(compose_cfg(AIRBENCH, "model.whiten=false", "model.bn_momentum=0.6"))
    with pytest.raises(ConfigError, match=r"model.widht is not a setting of models.AirbenchNet"):
        check_config(compose_cfg(AIRBENCH, "+model.widht=3"))
    with pytest.raises(ConfigError, match=r"did you mean model.widths\?"):
        check_config(compose_cfg(AIRBENCH, "+model.widht=3"))
    # Without `+`, Hydra itself refuses a key the option does not have, and says how to add it.
    with pytest.raises(ConfigCompositionException, match=r"use \+model.widht=3"):
        compose_cfg(AIRBENCH, "model.widht=3")


def test_cli_trains_it_for_one_epoch(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "model=airbench",
            "debug=tiny",
            "trainer.epochs=1",  # checks the command line, not training
            "tracking.enabled=false",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Building model <models.AirbenchNet>" in result.stderr + result.stdout
    assert "Best epoch 1" in result.stderr + result.stdout
