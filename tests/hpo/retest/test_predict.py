"""`make predict`: any image turned into a Fashion-MNIST-like input, classified by the champion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from data import CLASS_NAMES
from hpo.retest import predict
from hpo.tracking.registry import register
from hpo.tracking.runs import open_run, tracking_client
from hpo.tracking.settings import TrackingSettings
from models import RawPixelClassifier


def test_image_conversion_matches_fashion_mnist_conventions() -> None:
    photo = Image.new("RGB", (200, 100), "white")
    photo.paste((0, 0, 0), (80, 20, 120, 80))  # a dark 40x60 article on white
    pixels = predict.to_fashion_mnist(photo)
    assert pixels.shape == (1, 28, 28) and pixels.dtype == torch.float32
    assert pixels[0, 0, 0] == 0  # background became dark
    assert pixels.max() > 200  # the article became light
    # The article's longest side (60 px tall) fills the frame height.
    rows = (pixels[0] > 100).any(dim=1).nonzero()
    assert rows.max() - rows.min() + 1 >= 26


def test_a_transparent_background_counts_as_white() -> None:
    sticker = Image.new("RGBA", (50, 50), (0, 0, 0, 0))  # transparent black
    sticker.paste((20, 20, 20, 255), (5, 20, 45, 30))  # an opaque dark 40x10 article
    pixels = predict.to_fashion_mnist(sticker)
    assert pixels[0, 0, 0] == 0 and pixels.max() > 200  # inverted like a photo on white


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_is_sorted_probabilities(k: int) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    ranked = predict.top_k(model, torch.rand(1, 28, 28) * 255, k=k)
    assert len(ranked) == k
    assert all(name in CLASS_NAMES for name, _ in ranked)
    assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)


def test_unusable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(predict.ImageError, match=r"missing\.png: no such file"):
        predict.load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(predict.ImageError, match=r"notes\.png: not a readable image"):
        predict.load_image(tmp_path / "notes.png")


def test_predict_without_champion_says_run_best_eval(tmp_path, capsys) -> None:
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert predict.main([str(tmp_path / "a.png"), "--tracking-uri", uri]) == 1
    assert "run `make sweep`, then `make best-eval` first" in capsys.readouterr().err
    # Asking found nothing and made nothing: no empty tracking store left behind.
    assert not (tmp_path / "mlflow.db").exists()


def test_predict_with_a_store_but_no_champion_says_run_best_eval(tmp_path, capsys) -> None:
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking_client(uri).search_experiments()  # a store with no registered model
    assert predict.main([str(tmp_path / "a.png"), "--tracking-uri", uri]) == 1
    err = capsys.readouterr().err
    assert "with alias 'champion'" in err and "run `make best-eval` first" in err


def _brightness_model() -> RawPixelClassifier:
    """Trouser (class 1) for a bright image, T-shirt/top (class 0) for a black one."""
    linear = torch.nn.Linear(28 * 28, 10)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[1] = 20 / (28 * 28)  # mean brightness (0-1) x 20
        linear.bias.zero_()
        linear.bias[0] = 1.0
    return RawPixelClassifier(torch.nn.Sequential(torch.nn.Flatten(), linear), mean=0.0, std=1.0)


def test_predict_classifies_each_image_with_the_champion(tmp_path, capsys) -> None:
    settings = TrackingSettings(uri=f"sqlite:///{tmp_path}/mlflow.db")
    with open_run(settings, run_name="best-eval") as run:
        assert run is not None
        register(
            _brightness_model(),
            tracking_uri=settings.uri,
            run_id=run.run_id,
            name="m",
            test_acc=0.5,
            example=torch.rand(2, 1, 28, 28) * 255,
            tags={},
        )
    # A light article on a dark background, and a black frame that stays dark.
    Image.new("L", (60, 80), 0).save(tmp_path / "dark.png")
    light = Image.new("L", (60, 80), 0)
    light.paste(255, (10, 10, 50, 70))
    light.save(tmp_path / "light.png")
    (tmp_path / "notes.png").write_text("not an image")
    files = [str(tmp_path / n) for n in ("dark.png", "notes.png", "light.png")]
    code = predict.main([*files, "--tracking-uri", settings.uri.reveal(), "--model-name", "m"])
    out, err = capsys.readouterr()
    assert code == 1  # one file failed, the others were still classified
    lines = out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [files[0], files[2]]
    assert lines[0].split(": ")[1].startswith("T-shirt/top")
    assert lines[1].split(": ")[1].startswith("Trouser")
    for line in lines:
        assert line.count("%") == 3  # class + top-3 probabilities
    assert "notes.png: not a readable image" in err
