"""What is fitted to a trained model before it is delivered: calibration, unknown-material score, conformal sets.

Each reads the whole validation split on every rank (under torchrun a rank's validation loader reads one shard,
and replicas must fit alike); the unknown-material score's class statistics read the whole training split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from alloy_mtl.mtl.loading.datasets import make_dataloader
from alloy_mtl.mtl.params import TrainingParams
from alloy_mtl.mtl.tasks import TaskSpec
from alloy_mtl.mtl.training.calibration import calibrate_model
from alloy_mtl.mtl.training.conformal import fit_conformal
from alloy_mtl.mtl.training.ood import fit_ood
from alloy_mtl.mtl.training.predict import predict

__all__ = ["fit_after_training"]


def _whole(loader: Any, batch_size: int) -> Any:
    return make_dataloader(loader.dataset, batch_size) if isinstance(loader, DataLoader) else loader


def fit_after_training(
    model: nn.Module,
    loaders: Mapping[str, Any],
    tasks: Sequence[TaskSpec],
    params: TrainingParams,
    device: torch.device,
    *,
    conformal_loader: Any = None,
) -> dict[str, dict[str, Any]]:
    """Temperature (``training.calibration``), then the unknown-material score (``training.ood``), then the
    conformal sets on the calibrated probabilities (``training.conformal_coverage``), each set in ``model``;
    the sets on ``conformal_loader``'s labelled images where given (``training.conformal_set``), else on
    validation.

    Returns the training summary's ``calibration``, ``ood`` and ``conformal`` reports (empty when off).
    """
    val = _whole(loaders["val"], params.batch_size)
    calibration = (
        calibrate_model(model, predict(model, val, tasks, device), tasks)
        if params.calibration == "temperature"
        else {}
    )
    ood = (
        fit_ood(model, _whole(loaders["train"], params.batch_size), val, tasks)
        if params.ood == "mahalanobis"
        else {}
    )
    conformal: dict[str, Any] = {}
    if params.conformal_coverage is not None:
        on = val if conformal_loader is None else conformal_loader
        conformal = fit_conformal(model, predict(model, on, tasks, device), tasks, params.conformal_coverage)
        if conformal:
            conformal["fitted_on"] = "validation_split" if conformal_loader is None else params.conformal_set
    return {"calibration": calibration, "ood": ood, "conformal": conformal}
