"""Test helpers building predictions tables in the evaluation contract, and the tiny physics unknown score's
settings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS

#: A tiny generation and physics unknown score (``unknown_materials``) the physics unknown tests fit.
PHYSICS_GENERATION = {"seed": 5, "image_size": 16, "n_images": 100}
PHYSICS_TINY = {"known_images": 200, "images_per_designation": 20, "reference_images": 200, "batch_size": 50}


def predictions_from_probs(
    probs: np.ndarray, y_true: np.ndarray, ids: list[str] | None = None
) -> pd.DataFrame:
    """A predictions table whose ``alloy_pred`` is the argmax of ``probs`` (class indices in ``y_true``)."""
    alloys = np.asarray(ALLOYS)
    frame = pd.DataFrame(
        {
            "image_id": ids or [f"img{i:03d}" for i in range(len(y_true))],
            "alloy_true": alloys[np.asarray(y_true)],
            "alloy_pred": alloys[probs.argmax(axis=1)],
        }
    )
    for index, alloy in enumerate(ALLOYS):
        frame[f"prob_{alloy}"] = probs[:, index]
    return frame
