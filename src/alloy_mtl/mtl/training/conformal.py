"""Fit a trained model's split-conformal sets and intervals (``MultiTaskModel.conformal``) on validation."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from alloy_mtl.mtl.tasks import TaskSpec

__all__ = ["fit_conformal"]

logger = logging.getLogger(__name__)


def fit_conformal(
    model: nn.Module, outputs: Mapping[str, np.ndarray], tasks: Sequence[TaskSpec], coverage: float
) -> dict[str, Any]:
    """Fit ``model.conformal`` on validation ``outputs`` of the calibrated model (``training.predict``:
    ``<task>_probs`` / ``_target`` of the first classification task, ``<task>_pred`` / ``_target`` of each
    regression task). Returns the thresholds, counts and half-widths (empty without a classification task)."""
    sets = getattr(model, "conformal", None)
    task = next((t for t in tasks if t.is_classification), None)
    if sets is None or task is None or f"{task.name}_target" not in outputs:
        logger.info("conformal sets: no classification task or validation labels; not fitted")
        return {}
    residuals = {
        name: np.abs(outputs[f"{name}_target"] - outputs[f"{name}_pred"])
        for name in sets.regression_tasks
        if f"{name}_target" in outputs
    }
    missing = [name for name in sets.regression_tasks if name not in residuals]
    residuals |= {name: np.empty(0) for name in missing}
    report = sets.fit(outputs[f"{task.name}_probs"], outputs[f"{task.name}_target"], residuals, coverage)
    report["task"] = task.name
    logger.info(
        "conformal sets at %.0f%% coverage: class thresholds %s; interval half-widths %s",
        100 * coverage,
        ", ".join(f"{q:.3g}" for q in report["class_quantiles"]),
        ", ".join(f"{k} {v:.3g}" for k, v in report["half_widths"].items()),
    )
    return report
