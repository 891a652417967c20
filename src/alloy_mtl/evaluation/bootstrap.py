"""95% bootstrap intervals of the headline metrics, resampling specimens (not images).

Images of one specimen share its composition and wedge, so they are not independent: a specimen-level
bootstrap draws specimens with replacement and carries all their images along. Every resample is a vector
of per-image multiplicities, so the metrics are computed as weighted sums over one fixed sort order,
vectorised over resamples (thousands of resamples of thousands of images in about a second).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.evaluation.classification import label_indices, labelled_rows, prob_columns

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


def specimen_weights(groups: Sequence[Any] | np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_images) multiplicities of each image when specimens are drawn with replacement."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups)), sort=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniques), size=(n_resamples, len(uniques)))
    per_specimen = np.stack([np.bincount(row, minlength=len(uniques)) for row in draws]).astype(np.float64)
    return per_specimen[:, codes]


def weighted_average_precision(positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision per resample (rows of ``weights``) for one class; NaN where it has no positive."""
    order = np.argsort(-scores, kind="stable")
    pos = positive[order].astype(np.float64)
    w = weights[:, order]
    tp = np.cumsum(w * pos, axis=1)
    seen = np.cumsum(w, axis=1)
    total = tp[:, -1:]
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    gained = w * pos / np.where(total > 0, total, 1.0)
    ap = (gained * precision).sum(axis=1)
    return np.where(total[:, 0] > 0, ap, np.nan)


def _interval(values: np.ndarray, level: float) -> list[float] | None:
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return [float(low), float(high)]


def classification_intervals(
    predictions: pd.DataFrame,
    alloys: Sequence[str],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Any]:
    """Intervals of ``macro_ap``, ``ap`` per class, ``accuracy`` and ``balanced_accuracy``.

    ``predictions`` needs ``specimen_id`` beside the evaluation contract columns (``alloy_true``,
    ``alloy_pred``, ``prob_<class>``).
    """
    rows = labelled_rows(predictions)
    y_true = label_indices(rows["alloy_true"], alloys)
    y_pred = label_indices(rows["alloy_pred"], alloys)
    probs = rows[prob_columns(alloys)].to_numpy(dtype=float)
    weights = specimen_weights(rows["specimen_id"].to_numpy(), n_resamples, seed)
    per_class = np.stack(
        [weighted_average_precision(y_true == k, probs[:, k], weights) for k in range(len(alloys))], axis=1
    )
    with np.errstate(invalid="ignore"):
        macro = np.nanmean(np.where(np.isnan(per_class).all(axis=1, keepdims=True), 0.0, per_class), axis=1)
    correct = (y_true == y_pred).astype(np.float64)
    accuracy = (weights * correct).sum(axis=1) / weights.sum(axis=1)
    recalls = []
    for k in range(len(alloys)):
        member = (y_true == k).astype(np.float64)
        support = (weights * member).sum(axis=1)
        recalls.append(
            np.divide(
                (weights * member * correct).sum(axis=1),
                support,
                out=np.full_like(support, np.nan),
                where=support > 0,
            )
        )
    with np.errstate(invalid="ignore"):
        balanced = np.nanmean(np.stack(recalls, axis=1), axis=1)
    return {
        "level": level,
        "n_resamples": n_resamples,
        "n_specimens": int(rows["specimen_id"].nunique()),
        "macro_ap": _interval(macro, level),
        "ap": {alloy: _interval(per_class[:, k], level) for k, alloy in enumerate(alloys)},
        "accuracy": _interval(accuracy, level),
        "balanced_accuracy": _interval(balanced, level),
    }


def r2_interval(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> list[float] | None:
    """Specimen-bootstrap interval of R2 (rows with a missing label are left out)."""
    labelled = np.isfinite(y_true)
    true, pred = y_true[labelled], y_pred[labelled]
    if true.size < 2:
        return None
    weights = specimen_weights(groups[labelled], n_resamples, seed)
    total = weights.sum(axis=1, keepdims=True)
    mean = (weights * true).sum(axis=1, keepdims=True) / total
    residual = (weights * (true - pred) ** 2).sum(axis=1)
    spread = (weights * (true - mean) ** 2).sum(axis=1)
    r2 = np.where(spread > 0, 1.0 - residual / np.where(spread > 0, spread, 1.0), np.nan)
    return _interval(r2, level)


def metric_intervals(
    predictions: pd.DataFrame,
    alloys: Sequence[str],
    regression_targets: Mapping[str, str],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Any]:
    """``{"classification": ..., "regression": {task: {"r2": [lo, hi]}}}`` for a predictions table with
    ``specimen_id``; ``regression_targets`` maps each regression task to its target column."""
    options = {"n_resamples": n_resamples, "seed": seed, "level": level}
    groups = predictions["specimen_id"].to_numpy()
    regression = {
        task: {
            "r2": r2_interval(
                predictions[f"{target}_true"].to_numpy(dtype=float),
                predictions[f"{target}_pred"].to_numpy(dtype=float),
                groups,
                **options,
            )
        }
        for task, target in regression_targets.items()
    }
    return {
        "classification": classification_intervals(predictions, alloys, **options),
        "regression": regression,
    }
