"""Plain-PyTorch Fashion-MNIST models, built by ``hydra.utils.instantiate`` from ``conf/model/``.

This package never imports hydra, optuna or mlflow.
"""

from __future__ import annotations

from models.airbench import AirbenchNet
from models.cnn import CNN
from models.ensemble import ProbabilityEnsemble
from models.flip_tta import FlipTTA
from models.parameters import count_parameters
from models.raw_pixels import RawPixelClassifier
from models.resnet import PreActResNet
from models.seed_cnn import SeedCNN

__all__ = [
    "CNN",
    "AirbenchNet",
    "FlipTTA",
    "PreActResNet",
    "ProbabilityEnsemble",
    "RawPixelClassifier",
    "SeedCNN",
    "count_parameters",
]
