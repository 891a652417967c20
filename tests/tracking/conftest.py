"""Fixtures of the tracking tests: one real sqlite MLflow per test session, tiny untrained model bundles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from alloy_mtl.mtl.models.multitask import build_model
from alloy_mtl.mtl.tasks import parse_tasks

TASKS: dict[str, dict[str, Any]] = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "cross_entropy"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
    "absorption": {"kind": "regression", "target": "absorption", "loss": "mse"},
}


def make_bundle(
    in_chans: int = 3, image_size: int = 8, seed: int = 0, instrument_keys: list[str] | None = None
) -> dict[str, Any]:
    """An untrained FNN bundle in the format of ``train_from_params`` (random weights, fixed statistics);
    ``instrument_keys``: conditioned on those settings (typical value 1.0 each)."""
    torch.manual_seed(seed)
    options: dict[str, Any] = {"fnn_hidden": [16], "input_transform": "neg_log"}
    if instrument_keys:
        options["instrument_keys"] = list(instrument_keys)
    model = build_model("fnn", in_chans, image_size, parse_tasks(TASKS), **options)
    if instrument_keys:
        model.conditioning.mean.fill_(1.0)
        model.conditioning.std.fill_(0.01)
    model.normalizer.mean.fill_(0.7)
    model.normalizer.std.fill_(0.3)
    model.target_scaler.set_stats({"thickness": (4.0, 2.0), "absorption": (3.0, 0.5)})
    return {
        "arch": "fnn",
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "in_chans": in_chans,
        "image_size": image_size,
        "activation": None,
        "model_options": options,
        "tasks": TASKS,
    }


@pytest.fixture
def bundle_factory() -> Callable[..., dict[str, Any]]:
    """``make_bundle`` as a fixture."""
    return make_bundle


@pytest.fixture(scope="session")
def mlflow_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real sqlite MLflow in a temporary folder shared by the tracking tests (created once: ~3 s)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("tests", artifact_location=(root / "mlartifacts").as_uri())
    yield {"uri": uri, "client": client, "experiment_id": experiment_id, "root": Path(root)}
    mlflow.set_tracking_uri(previous)
    mlflow.set_registry_uri(previous)


@pytest.fixture(autouse=True)
def point_mlflow_at_backend(mlflow_backend: dict[str, Any], isolated_mlflow: str) -> Iterator[None]:
    """Each tracking test starts with MLflow's global URI on the shared test database (a Kedro session run by
    another test may have moved it) and gives the session's isolated one back: ``mlflow.set_tracking_uri``
    also exports ``MLFLOW_TRACKING_URI``, which a later test's Kedro run would otherwise follow."""
    mlflow.set_tracking_uri(mlflow_backend["uri"])
    mlflow.set_registry_uri(mlflow_backend["uri"])
    yield
    mlflow.set_tracking_uri(isolated_mlflow)
    mlflow.set_registry_uri(isolated_mlflow)
