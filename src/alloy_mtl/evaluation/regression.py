"""Regression metrics overall and by many/medium/few-shot region, and alloy shot groups.

Shot regions follow Yang et al. (2021, "Delving into Deep Imbalanced Regression"): the training labels
are binned into a histogram whose edges span the training range; a test sample belongs to the region of
its bin, decided by how many training labels fall in that bin: many-shot when more than
``thresholds["many"]``, few-shot when fewer than ``thresholds["few"]``, medium-shot otherwise. Test
values outside the training range count as bins with no training label (few-shot). The same thresholds
applied to the per-alloy training counts give the class groups used for classification.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.jsonable import to_jsonable

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: dict[str, int] = {"many": 100, "few": 20}
DEFAULT_BINS = 50
SHOT_GROUPS: tuple[str, ...] = ("many", "medium", "few")


def _check_thresholds(thresholds: Mapping[str, int]) -> tuple[int, int]:
    if set(thresholds) != {"many", "few"}:
        raise ValueError(
            f"shot thresholds must have exactly the keys 'many' and 'few', got {dict(thresholds)}"
        )
    many, few = thresholds["many"], thresholds["few"]
    if few > many:
        raise ValueError(f"shot thresholds: 'few' ({few}) must not exceed 'many' ({many})")
    return many, few


def group_of_counts(counts: np.ndarray, thresholds: Mapping[str, int] = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Shot group (``"many"``, ``"medium"`` or ``"few"``) of each training count."""
    many, few = _check_thresholds(thresholds)
    counts = np.asarray(counts)
    return np.where(counts > many, "many", np.where(counts < few, "few", "medium"))


def _finite(values: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        raise ValueError(f"{name}: no finite training label to build the shot histogram from")
    return finite


def shot_bin_edges(
    train_targets: np.ndarray | Sequence[float], bins: int | Sequence[float] = DEFAULT_BINS
) -> np.ndarray:
    """Histogram bin edges of the training labels (``bins`` equal bins over the training range, or given edges)."""
    train = _finite(train_targets, "train_targets")
    if np.ndim(bins) == 0:
        return np.histogram_bin_edges(train, bins=int(bins), range=(train.min(), train.max()))
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins: explicit edges must be a strictly increasing 1-D sequence, got {bins!r}")
    return edges


def shot_groups(
    y_true: np.ndarray | Sequence[float],
    train_targets: np.ndarray | Sequence[float],
    thresholds: Mapping[str, int] = DEFAULT_THRESHOLDS,
    bins: int | Sequence[float] = DEFAULT_BINS,
) -> np.ndarray:
    """Shot group of each test label, from the training-label count of the histogram bin it falls in.

    Bins are ``[lo, hi)`` except the last, which includes its upper edge (numpy's histogram convention).
    Test labels outside the edges, or NaN, are ``"few"`` (no training label in their bin).
    """
    edges = shot_bin_edges(train_targets, bins)
    counts, _ = np.histogram(_finite(train_targets, "train_targets"), bins=edges)
    y = np.asarray(y_true, dtype=float).ravel()
    index = np.searchsorted(edges, y, side="right") - 1
    index[y == edges[-1]] = len(counts) - 1
    inside = (index >= 0) & (index < len(counts)) & np.isfinite(y)
    sample_counts = np.zeros(y.shape, dtype=np.int64)
    sample_counts[inside] = counts[index[inside]]
    return group_of_counts(sample_counts, thresholds)


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    n = int(y_true.size)
    if n == 0:
        return {"n": 0, "r2": None, "mae": None, "rmse": None}
    r2 = float(r2_score(y_true, y_pred)) if n >= 2 and np.ptp(y_true) > 0 else None
    return {
        "n": n,
        "r2": r2,
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
    }


def regression_metrics(
    y_true: np.ndarray | Sequence[float],
    y_pred: np.ndarray | Sequence[float],
    train_targets: np.ndarray | Sequence[float],
    thresholds: Mapping[str, int] = DEFAULT_THRESHOLDS,
    bins: int | Sequence[float] = DEFAULT_BINS,
    *,
    name: str = "regression",
) -> dict[str, Any]:
    """R2, MAE and RMSE overall and per many/medium/few-shot region, as a JSON-able dict.

    Samples whose ``y_true`` is NaN (label missing) are skipped; a NaN prediction for a labelled sample
    raises ``ValueError``. Keys: ``overall``, ``many``, ``medium``, ``few`` (each ``n``, ``r2``, ``mae``,
    ``rmse``; ``None`` where undefined: no sample, or R2 of fewer than two or constant targets),
    ``n_missing_labels``, ``thresholds`` and ``bin_edges``.
    """
    true = np.asarray(y_true, dtype=float).ravel()
    pred = np.asarray(y_pred, dtype=float).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"{name}: y_true has {true.size} values but y_pred has {pred.size}")
    labelled = np.isfinite(true)
    bad = labelled & ~np.isfinite(pred)
    if bad.any():
        raise ValueError(f"{name}: y_pred is not finite at positions {np.flatnonzero(bad)[:5].tolist()}")
    if not labelled.all():
        logger.info("%s: skipping %d samples without a label", name, int((~labelled).sum()))
    true, pred = true[labelled], pred[labelled]
    groups = shot_groups(true, train_targets, thresholds, bins)
    result: dict[str, Any] = {"overall": _scores(true, pred)}
    for group in SHOT_GROUPS:
        member = groups == group
        result[group] = _scores(true[member], pred[member])
    result["n_missing_labels"] = int((~labelled).sum())
    result["thresholds"] = dict(thresholds)
    result["bin_edges"] = shot_bin_edges(train_targets, bins)
    return to_jsonable(result)


def alloy_shot_groups(
    train_labels: Sequence[str] | np.ndarray | pd.Series,
    alloys: Sequence[str] = ALLOYS,
    thresholds: Mapping[str, int] = DEFAULT_THRESHOLDS,
) -> dict[str, str]:
    """Shot group of each alloy from its number of training images (missing labels are not counted)."""
    labels = pd.Series(train_labels).dropna().astype(str)
    unknown = sorted(set(labels) - set(alloys))
    if unknown:
        raise ValueError(f"train alloy labels {unknown} are not among {list(alloys)}")
    counts = labels.value_counts().reindex(list(alloys), fill_value=0).to_numpy()
    return dict(zip(alloys, group_of_counts(counts, thresholds).tolist(), strict=True))


def classification_shot_metrics(
    y_true: Sequence[str] | np.ndarray | pd.Series,
    y_pred: Sequence[str] | np.ndarray | pd.Series,
    train_labels: Sequence[str] | np.ndarray | pd.Series,
    alloys: Sequence[str] = ALLOYS,
    thresholds: Mapping[str, int] = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Accuracy per alloy shot group (many/medium/few by training count per alloy), as a JSON-able dict.

    Keys: ``train_counts`` and ``class_groups`` per alloy, and per group ``alloys``, ``n`` (labelled test
    samples of those alloys) and ``accuracy`` (``None`` without samples). Missing true labels are skipped.
    """
    true = pd.Series(y_true).reset_index(drop=True)
    pred = pd.Series(y_pred).reset_index(drop=True).astype(str)
    if len(true) != len(pred):
        raise ValueError(f"classification shot metrics: {len(true)} true labels but {len(pred)} predictions")
    labelled = true.notna()
    true, pred = true[labelled].astype(str), pred[labelled]
    class_groups = alloy_shot_groups(train_labels, alloys, thresholds)
    counts = pd.Series(train_labels).dropna().astype(str).value_counts().reindex(list(alloys), fill_value=0)
    result: dict[str, Any] = {"train_counts": counts.to_dict(), "class_groups": class_groups}
    for group in SHOT_GROUPS:
        members = [alloy for alloy in alloys if class_groups[alloy] == group]
        mask = true.isin(members)
        n = int(mask.sum())
        accuracy = float((true[mask] == pred[mask]).mean()) if n else None
        result[group] = {"alloys": members, "n": n, "accuracy": accuracy}
    result["thresholds"] = dict(thresholds)
    return to_jsonable(result)
