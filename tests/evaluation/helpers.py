"""Test helpers building predictions tables in the evaluation contract."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS


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
