"""What a training run records: the validation-prediction figure (as validation scored it,
flip TTA or not), and params, tags and config file without any password."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from hpo.tracking.recording import (
    CONFIG_ARTIFACT,
    PREDICTIONS_ARTIFACT,
    log_run_start,
    run_figures,
    run_tags,
)
from hpo.tracking.runs import open_run, tracking_client
from hpo.tracking.settings import TrackingSettings
from hpo.training.loop import FitResult
from hpo.training.precision import FP32

CLASSES = ("left", "right")


class HalfBrightness(nn.Module):
    """Logits = brightness of the left and of the right half: a mirror swaps them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        left, right = x[..., :half].sum(dim=(1, 2, 3)), x[..., half:].sum(dim=(1, 2, 3))
        return torch.stack([left, right], dim=1)


@pytest.mark.parametrize(
    ("tta", "expected"), [(False, "pred: left 100%"), (True, "pred: left 50%")]
)
def test_prediction_figure_follows_the_runs_tta(tta: bool, expected: str) -> None:
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    images[..., :2] = 255  # bright left half: class "left" alone, a tie with its mirror
    batch = images.float() / 255
    epoch = {"train/loss": 0.1, "train/acc": 1.0, "val/loss": 0.1, "val/acc": 1.0}
    result = FitResult(history=[epoch], best_epoch=1, best_metrics=epoch, best_state={})

    figures = run_figures(
        result, HalfBrightness(), images, torch.zeros(2, dtype=torch.long), batch, CLASSES, tta=tta
    )

    grid = dict((artifact, figure) for figure, artifact in figures)[PREDICTIONS_ARTIFACT]
    titles = [ax.get_title() for ax in grid.axes if ax.get_title()]
    assert titles == [f"true: left\n{expected}"] * 2


def test_a_runs_params_tags_and_config_file_hold_no_password(tmp_path) -> None:
    settings = TrackingSettings(uri=f"sqlite:///{tmp_path}/mlflow.db")
    cfg = OmegaConf.create(
        {
            "tracking": {"uri": "http://user:s3cret@10.0.0.2:5000"},
            "hpo": {"storage": "postgresql+psycopg://fmnist:s3cret@db/optuna"},
            "model": {"width": 8},
        }
    )
    overrides = ("tracking.uri=http://user:s3cret@10.0.0.2:5000", "model.width=8")
    tags = run_tags(torch.device("cpu"), FP32, overrides)
    with open_run(settings, tags=tags) as run:
        assert run is not None
        log_run_start(run, cfg, num_parameters=10, precision=FP32, not_params=("hpo",))
    recorded = tracking_client(settings.uri).get_run(run.run_id).data
    config_file = run.download(CONFIG_ARTIFACT, str(tmp_path)).read_text()
    for text in (str(recorded.params), str(recorded.tags), config_file):
        assert "s3cret" not in text
    assert recorded.params["tracking.uri"] == "http://user:***@10.0.0.2:5000"
    assert recorded.params["model.width"] == "8" and "hpo.storage" not in recorded.params
    assert recorded.tags["hydra_overrides"] == (
        "tracking.uri=http://user:***@10.0.0.2:5000 model.width=8"
    )
    assert "storage: postgresql+psycopg://fmnist:***@db/optuna" in config_file
