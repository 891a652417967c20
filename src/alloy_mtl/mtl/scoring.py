"""Answers for unlabelled images (no metadata, no targets): what the unknown-material evaluation scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, make_dataloader
from alloy_mtl.mtl.loading.preprocess import bundle_bad_pixels
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.models.ood import DEFAULT_REJECT_RATE
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.predict import predict

__all__ = ["score_images"]


def score_images(
    bundle: Mapping[str, Any],
    images: np.ndarray,
    batch_size: int = 256,
    instrument: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Unlabelled images: the first classification task's answer (``<target>_pred``, before any unknown
    decision), its probability (``max_prob``), ``ood_score`` (NaN without a fitted score) and the threshold
    at the default rate (``ood_threshold``). An instrument-conditioned model reads ``instrument`` (one for
    every image; None: its training images' typical one)."""
    model = load_model(bundle)
    keys = model.instrument_keys
    if keys:
        typical = {**model.conditioning.typical(), **dict(instrument or {})}
        settings = np.tile(np.array([[typical[key] for key in keys]], dtype=np.float32), (len(images), 1))
    else:
        settings = None
    tasks = parse_tasks(bundle["tasks"])
    size = int(bundle["image_size"])
    dataset = ArrayTaskDataset(
        images,
        {},
        image_size=None if images.shape[-1] == size else size,
        bad_pixels=bundle_bad_pixels(bundle),
        settings=settings,
    )
    outputs = predict(model, make_dataloader(dataset, batch_size), tasks, device="cpu")
    frame = pd.DataFrame(index=range(len(images)))
    task = next((t for t in tasks if t.is_classification), None)
    if task is not None:
        frame[f"{task.target}_pred"] = np.asarray(task.classes, dtype=object)[outputs[f"{task.name}_pred"]]
        frame["max_prob"] = outputs[f"{task.name}_probs"].max(axis=1).astype(np.float64)
    frame["ood_score"] = outputs.get("ood_score", np.full(len(images), np.nan)).astype(np.float64)
    density = model.ood
    frame["ood_threshold"] = (
        density.threshold(DEFAULT_REJECT_RATE) if density is not None and density.fitted else np.nan
    )
    return frame
