"""The Model Registry's champion alias moves only to a better test accuracy."""

from __future__ import annotations

import torch

from hpo.tracking.registry import CHAMPION, load_champion, register
from hpo.tracking.runs import open_run, tracking_client
from hpo.tracking.settings import TrackingSettings
from models import FlipTTA, RawPixelClassifier


def test_champion_moves_only_on_improvement(tmp_path) -> None:
    settings = TrackingSettings(uri=f"sqlite:///{tmp_path}/mlflow.db")
    model = RawPixelClassifier(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), mean=0.3, std=0.3
    )
    example = torch.rand(2, 1, 28, 28) * 255
    outcomes = []
    for acc in (0.80, 0.75, 0.80, 0.85):
        with open_run(settings, run_name="best-eval") as run:
            outcomes.append(
                register(
                    model,
                    tracking_uri=settings.uri,
                    run_id=run.run_id,
                    name="m",
                    test_acc=acc,
                    example=example,
                    tags={},
                )
            )
    assert [o.champion for o in outcomes] == [True, False, False, True]
    assert [o.version for o in outcomes] == ["1", "2", "3", "4"]
    assert outcomes[1].previous_version == "1" and outcomes[1].previous_test_acc == 0.80
    assert "did not beat the champion v1" in outcomes[1].describe()
    client = tracking_client(settings.uri)
    assert str(client.get_model_version_by_alias("m", CHAMPION).version) == "4"


def test_registered_flip_tta_model_reloads_and_flips(tmp_path) -> None:
    settings = TrackingSettings(uri=f"sqlite:///{tmp_path}/mlflow.db")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    with open_run(settings, run_name="best-eval") as run:
        register(
            RawPixelClassifier(FlipTTA(net), mean=0.3, std=0.3),
            tracking_uri=settings.uri,
            run_id=run.run_id,
            name="m",
            test_acc=0.9,
            example=torch.rand(2, 1, 28, 28) * 255,
            tags={},
        )
    served = load_champion(settings.uri, "m")
    plain = RawPixelClassifier(net, mean=0.3, std=0.3).eval()
    half = torch.rand(2, 1, 28, 14) * 255
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)
    asymmetric = torch.cat([half, torch.zeros_like(half)], dim=-1)
    with torch.inference_mode():
        # A mirror-symmetric image: the flip changes nothing.
        torch.testing.assert_close(served(symmetric), plain(symmetric))
        # Any other image: the mean of both passes, not the plain logits.
        both = (plain(asymmetric) + plain(asymmetric.flip(-1))) / 2
        torch.testing.assert_close(served(asymmetric), both)
        assert not torch.allclose(served(asymmetric), plain(asymmetric), atol=1e-3)
