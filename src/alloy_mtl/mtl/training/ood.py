"""Fit a trained model's unknown-material score (``MultiTaskModel.ood``) after training.

Class means and the shared covariance come from the training split's features (the images the model learned
from, in eval mode, without augmentation's randomness beyond what the loader applies), the reference quantiles
from the validation split's scores: known materials the features were not fitted on, so a threshold read
from them rejects about the stated share of new known images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from alloy_mtl.mtl.device import to_device
from alloy_mtl.mtl.tasks import TaskSpec
from alloy_mtl.mtl.training.predict import split_batch

__all__ = ["features_of", "fit_ood"]

logger = logging.getLogger(__name__)


@torch.inference_mode()
def features_of(
    model: nn.Module, loader: DataLoader, task: str | None = None
) -> tuple[Tensor, Tensor | None]:
    """Shared features (N, F) of every batch of ``loader`` (float32, on CPU), and ``task``'s labels when the
    batches carry them (None otherwise)."""
    device = next(model.parameters()).device
    model.eval()
    features: list[Tensor] = []
    labels: list[Tensor] = []
    for batch in loader:
        images, targets, _ = split_batch(batch)
        features.append(model.encode(to_device(images, device)).float().cpu())
        if task is not None and targets is not None and task in targets:
            labels.append(targets[task].long().cpu())
    stacked = torch.cat(features) if features else torch.empty(0, getattr(model, "num_features", 0))
    return stacked, (torch.cat(labels) if labels and len(labels) == len(features) else None)


def fit_ood(
    model: nn.Module, train: DataLoader, val: DataLoader, tasks: Sequence[TaskSpec]
) -> dict[str, Any]:
    """Fit ``model.ood`` on the first classification task's classes: means and precision on ``train``'s
    features, the reference on ``val``'s scores. Returns a report (``task``, ``n_train``, ``n_val``, the
    validation score quantiles); empty (and logged) when the model has no such task or no score module, and
    ``fitted: false`` with the reason when a class has no training image (the model then answers every image)."""
    density = getattr(model, "ood", None)
    task = next((t for t in tasks if t.is_classification), None)
    if density is None or task is None:
        logger.info("unknown-material score: no classification task or score module; not fitted")
        return {}
    train_features, labels = features_of(model, train, task.name)
    if labels is None:
        raise ValueError(f"fit_ood: the training loader carries no {task.name!r} labels")
    try:
        density.fit(train_features, labels)
    except ValueError as error:  # a training run must not fail after training for want of one class's images
        logger.warning("unknown-material score not fitted (every image will be answered): %s", error)
        return {"task": task.name, "method": "mahalanobis", "fitted": False, "reason": str(error)}
    val_features, _ = features_of(model, val)
    val_scores = density.distances(val_features.to(density.means.device)).min(dim=1).values
    density.set_reference(val_scores.cpu())
    report = {
        "task": task.name,
        "method": "mahalanobis",
        "fitted": True,
        "n_train": int((labels >= 0).sum()),
        "n_val": len(val_features),
        **density.summary(),
    }
    logger.info(
        "unknown-material score fitted on %d training images; validation median %.1f, 99th percentile %.1f",
        report["n_train"],
        report.get("val_score_q50", np.nan),
        report.get("val_score_q99", np.nan),
    )
    return report
