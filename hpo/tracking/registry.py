"""The MLflow Model Registry: register a retested model, keep the `champion` alias honest."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from hpo.paths import PROJECT_ROOT, sqlite_database
from hpo.tracking.runs import tracking_client
from hpo.urls import SecretUrl

log = logging.getLogger(__name__)

CHAMPION = "champion"
TEST_ACC_TAG = "test_acc"


@dataclass(frozen=True)
class Registration:
    """Where the model went and whether it became the champion."""

    name: str
    version: str
    champion: bool
    previous_version: str | None
    previous_test_acc: float | None

    def describe(self) -> str:
        if self.previous_version is None:
            return f"{self.name} v{self.version} is the first champion"
        verb = "is the new champion, replacing" if self.champion else "did not beat the champion"
        previous = "unknown" if self.previous_test_acc is None else f"{self.previous_test_acc:.4f}"
        return (
            f"{self.name} v{self.version} {verb} v{self.previous_version} "
            f"(test accuracy {previous})"
        )


def register(
    model: torch.nn.Module,
    *,
    tracking_uri: SecretUrl | str,
    run_id: str,
    name: str,
    test_acc: float,
    example: torch.Tensor,
    tags: dict[str, Any],
) -> Registration:
    """Log `model` (raw pixels in, logits out) to run `run_id`, register it under `name`, and
    move the `champion` alias to it only if its test accuracy beats the current champion's."""
    # MLflow's model logging goes through its global tracking URI: it connects, so it is
    # given the whole URI.
    mlflow.set_tracking_uri(SecretUrl(tracking_uri).reveal())
    model = model.cpu().eval()
    example_np = example.cpu().float().numpy()
    with torch.inference_mode():
        output = model(example.cpu().float()).numpy()
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=example_np,
            signature=infer_signature(example_np, output),
            registered_model_name=name,
            # Ship the model classes so the registered model loads without this checkout.
            code_paths=[str(PROJECT_ROOT / "models")],
            # Pinning what the model needs skips MLflow's slow requirement inference.
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"numpy=={np.__version__}",
            ],
        )
    client = tracking_client(tracking_uri)
    version = str(info.registered_model_version)
    for key, value in {**tags, TEST_ACC_TAG: test_acc}.items():
        client.set_model_version_tag(name, version, key, str(value))
    return _crown_if_better(client, name, version, test_acc)


def _crown_if_better(
    client: MlflowClient, name: str, version: str, test_acc: float
) -> Registration:
    current = champion_version(client, name)
    if current is None or str(current.version) == version:
        client.set_registered_model_alias(name, CHAMPION, version)
        return Registration(name, version, True, None, None)
    previous_acc = _recorded_acc(current)
    previous = str(current.version)
    if previous_acc is not None and test_acc <= previous_acc:
        return Registration(name, version, False, previous, previous_acc)
    client.set_registered_model_alias(name, CHAMPION, version)
    return Registration(name, version, True, previous, previous_acc)


def _recorded_acc(version: Any) -> float | None:
    """The test accuracy tagged on a version; None when absent (it then never blocks)."""
    try:
        return float(version.tags[TEST_ACC_TAG])
    except (KeyError, ValueError):
        return None


def champion_version(client: MlflowClient, name: str) -> Any | None:
    """The model version holding the `champion` alias, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def load_champion(tracking_uri: SecretUrl | str, name: str) -> torch.nn.Module:
    """The champion model: float32 (N, 1, 28, 28) raw pixels 0-255 in, (N, 10) logits out."""
    tracking_uri = SecretUrl(tracking_uri)
    database = sqlite_database(tracking_uri)
    if database is not None and not database.exists():
        # MLflow would create an empty store just to find it holds no model.
        raise LookupError(
            f"no tracking store at {database} (so no model {name!r}); "
            "run `make sweep`, then `make best-eval` first"
        )
    mlflow.set_tracking_uri(tracking_uri.reveal())
    client = tracking_client(tracking_uri)
    if champion_version(client, name) is None:
        raise LookupError(
            f"no model {name!r} with alias {CHAMPION!r} in {tracking_uri}; "
            "run `make best-eval` first"
        )
    model = mlflow.pytorch.load_model(f"models:/{name}@{CHAMPION}", map_location="cpu")
    # MLflow may hand back a torch.export graph, which is frozen in eval mode already and
    # refuses .eval(); a plain module was pickled in eval mode, .eval() is a safeguard.
    with contextlib.suppress(NotImplementedError):
        model.eval()
    return model
