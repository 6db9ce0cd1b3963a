"""Plain-PyTorch Fashion-MNIST models, built by ``hydra.utils.instantiate`` from ``conf/model/``.

This package never imports hydra, optuna or mlflow.
"""

from __future__ import annotations

from models.cnn import CNN
from models.parameters import count_parameters
from models.raw_pixels import RawPixelClassifier
from models.resnet import PreActResNet
from models.seed_cnn import SeedCNN

__all__ = ["CNN", "PreActResNet", "RawPixelClassifier", "SeedCNN", "count_parameters"]
