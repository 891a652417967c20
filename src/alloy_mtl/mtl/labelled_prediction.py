"""Labelled images as a trained model takes them, and its predictions of them in the evaluation contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, make_dataloader
from alloy_mtl.mtl.loading.instrument_settings import settings_array
from alloy_mtl.mtl.loading.preprocess import bundle_bad_pixels
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.tasks import TaskSpec, parse_tasks
from alloy_mtl.mtl.training.predict import predict

__all__ = ["labelled_dataset", "predict_images", "predictions_frame", "task_targets"]


def task_targets(metadata: pd.DataFrame, tasks: Sequence[TaskSpec]) -> dict[str, np.ndarray]:
    """Per-task target arrays from the metadata, as each task's spec encodes them.

    Raises:
        ValueError: a task's target column is absent, or a class label is not among the task's classes.
    """
    targets: dict[str, np.ndarray] = {}
    for task in tasks:
        if task.target not in metadata.columns:
            raise ValueError(
                f"task '{task.name}': target column '{task.target}' is not in the metadata "
                f"(columns: {list(metadata.columns)})"
            )
        targets[task.name] = task.encode(metadata[task.target])
    return targets


def predictions_frame(
    outputs: Mapping[str, np.ndarray], metadata: pd.DataFrame, tasks: Sequence[TaskSpec]
) -> pd.DataFrame:
    """Predictions in the evaluation contract: ``image_id``, ``<target>_true``/``_pred``, ``prob_<class>``."""
    frame = pd.DataFrame({"image_id": metadata["image_id"].to_numpy()})
    for task in tasks:
        frame[f"{task.target}_true"] = task.truth(metadata[task.target])
        for column, values in task.prediction_columns(outputs).items():
            frame[column] = values
    return frame


def labelled_dataset(
    model: torch.nn.Module,
    images: np.ndarray,
    metadata: pd.DataFrame,
    tasks: Sequence[TaskSpec],
    *,
    image_size: int,
    bad_pixels: str,
    instrument: Mapping[str, float] | None = None,
) -> ArrayTaskDataset:
    """Labelled images prepared as ``model`` takes them: its target scaling, ``image_size`` and ``bad_pixels``
    correction, and for an instrument-conditioned model ``instrument`` (else the metadata's settings)."""
    keys = model.instrument_keys
    return ArrayTaskDataset(
        images,
        task_targets(metadata, tasks),
        target_stats=model.target_scaler.stats(),
        image_size=None if images.shape[-1] == image_size else image_size,
        bad_pixels=bad_pixels,
        settings=settings_array(keys, len(metadata), metadata, instrument) if keys else None,
    )


def predict_images(
    bundle: Mapping[str, Any],
    images: np.ndarray,
    metadata: pd.DataFrame,
    batch_size: int = 256,
    instrument: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Predictions of a trained bundle for labelled images, in the evaluation contract (plus ``specimen_id``).

    An instrument-conditioned model reads ``instrument`` (one instrument for every image: fitted from the
    batch, calibrated or known), else the metadata's ``instrument_<setting>`` columns; an unconditioned model
    ignores both. A model with a fitted unknown-material score adds ``ood_score``.
    """
    model = load_model(bundle)
    tasks = parse_tasks(bundle["tasks"])
    dataset = labelled_dataset(
        model,
        images,
        metadata,
        tasks,
        image_size=int(bundle["image_size"]),
        bad_pixels=bundle_bad_pixels(bundle),
        instrument=instrument,
    )
    outputs = predict(model, make_dataloader(dataset, batch_size), tasks, device="cpu")
    frame = predictions_frame(outputs, metadata, tasks)
    frame.insert(1, "specimen_id", metadata["specimen_id"].to_numpy())
    if "ood_score" in outputs:
        frame["ood_score"] = outputs["ood_score"].astype(np.float64)
    return frame
