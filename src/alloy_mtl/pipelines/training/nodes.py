"""Node of the training pipeline: merge the shared and per-architecture parameters, then train."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from alloy_mtl.data.store import XrayData
from alloy_mtl.mtl.experiment import train_from_params
from alloy_mtl.tracking.callback import training_callbacks

logger = logging.getLogger(__name__)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``, recursing into nested mappings (neither input is modified)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def train_architecture(
    model_input: XrayData, training: dict[str, Any], train_options: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Train one architecture's multi-task model and predict the test split.

    Args:
        model_input: the consolidated images with split-labelled metadata.
        training: parameters every architecture shares (``params:training``).
        train_options: this architecture's overrides (``params:<arch>.train_options``; must name ``arch``).

    Returns:
        Model bundle (best weights + rebuild recipe), per-epoch history, test predictions, run summary.
        Checkpoints for resuming go to ``<checkpoint_root>/<arch>/checkpoints``.
    """
    params = deep_merge(training, train_options)
    if "arch" not in params:
        raise ValueError("train_options must name the architecture ('arch'), e.g. arch: resnet18")
    checkpoint_dir = Path(params["checkpoint_root"]) / params["arch"] / "checkpoints"
    callbacks = training_callbacks(params["arch"])  # per-epoch MLflow metrics when a run is tracked
    result = train_from_params(model_input.images, model_input.metadata, params, checkpoint_dir, callbacks)
    return result.bundle, result.history, result.predictions, {**result.summary, "params": params}
