"""Temperature scaling fitted on validation data: probabilities that say how often the model is right.

A network trained to low cross-entropy is typically over-confident: the served champion said 1.00 where it was
right 20% of the time. One temperature per classification head (Guo et al. 2017, "On calibration of modern
neural networks"), the ``T`` minimising the negative log-likelihood of ``softmax(logits / T)`` on the
validation split, leaves every decision as it was and makes the stated confidence match the accuracy on data
like the validation data. The fitted ``T`` lives in the model (``MultiTaskModel.calibration``), so serving,
folder inference and evaluation all answer with calibrated probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torchmetrics.functional.classification import multiclass_calibration_error

from alloy_mtl.mtl.tasks import TaskSpec

__all__ = ["ECE_BINS", "TEMPERATURE_BOUNDS", "calibrate_model", "ece", "fit_temperature"]

logger = logging.getLogger(__name__)

TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)
"""The temperatures searched (a fitted T at a bound says the validation data gave little to go on)."""
ECE_BINS = 15


def _labelled(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.asarray(labels) >= 0
    return np.asarray(logits, dtype=np.float64)[keep], np.asarray(labels, dtype=np.int64)[keep]


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the mean negative log-likelihood of ``softmax(logits / T)`` over the labelled
    rows (``labels >= 0``), searched over ``log T`` within :data:`TEMPERATURE_BOUNDS` (deterministic).

    Raises:
        ValueError: no labelled row.
    """
    z, y = _labelled(logits, labels)
    if not len(y):
        raise ValueError("fit_temperature: no labelled validation rows")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / np.exp(log_t), axis=1)[rows, y].mean())

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def ece(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Top-label expected calibration error (``ECE_BINS`` equal-width bins, torchmetrics) of
    ``softmax(logits / temperature)`` over the labelled rows."""
    z, y = _labelled(logits, labels)
    if not len(y):
        return float("nan")
    probs = torch.softmax(torch.from_numpy(z / temperature), dim=1)
    return float(multiclass_calibration_error(probs, torch.from_numpy(y), z.shape[1], n_bins=ECE_BINS))


def calibrate_model(
    model: torch.nn.Module, outputs: Mapping[str, np.ndarray], tasks: Sequence[TaskSpec]
) -> dict[str, dict[str, Any]]:
    """Fit each classification task's temperature on validation ``outputs`` (``training.predict`` of the model
    before calibration: ``<task>_logits``, ``<task>_target``) and set it in ``model.calibration``.

    Returns ``{task: {"temperature", "val_nll_before", "val_nll_after", "val_ece_before", "val_ece_after",
    "n_val"}}``; a task without labelled validation rows keeps ``T = 1`` and is left out (logged).
    """
    report: dict[str, dict[str, Any]] = {}
    for task in tasks:
        if not task.is_classification or f"{task.name}_logits" not in outputs:
            continue
        logits, labels = outputs[f"{task.name}_logits"], outputs[f"{task.name}_target"]
        z, y = _labelled(logits, labels)
        if not len(y):
            logger.warning(
                "calibration: no labelled validation rows for %s; temperature left at 1", task.name
            )
            continue
        temperature = fit_temperature(z, y)
        model.calibration.set({task.name: temperature})
        rows = np.arange(len(y))
        report[task.name] = {
            "temperature": temperature,
            "val_nll_before": float(-log_softmax(z, axis=1)[rows, y].mean()),
            "val_nll_after": float(-log_softmax(z / temperature, axis=1)[rows, y].mean()),
            "val_ece_before": ece(z, y),
            "val_ece_after": ece(z, y, temperature),
            "n_val": int(len(y)),
        }
        logger.info(
            "calibration: %s temperature %.3f (validation ECE %.3f -> %.3f, %d images)",
            task.name,
            temperature,
            report[task.name]["val_ece_before"],
            report[task.name]["val_ece_after"],
            len(y),
        )
    return report
