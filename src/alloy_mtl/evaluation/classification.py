"""Alloy classification metrics from a predictions table (test split, one row per image).

The predictions contract: ``image_id``, ``alloy_true`` (one of the alloys), ``alloy_pred``, and one
probability column ``prob_<alloy>`` per alloy in canonical order whose rows sum to 1. Ranking metrics
(AP, ROC-AUC) and calibration use the probabilities; accuracy, F1, the confusion matrix and the report use
``alloy_pred`` (a hard-voting ensemble may predict a label other than the probabilities' argmax).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.jsonable import to_jsonable

logger = logging.getLogger(__name__)

ECE_BINS = 15
PROB_SUM_TOLERANCE = 1e-3


def prob_columns(alloys: Sequence[str] = ALLOYS) -> list[str]:
    """Names of the probability columns, ``prob_<alloy>``, in the order of ``alloys``."""
    return [f"prob_{alloy}" for alloy in alloys]


def examples_text(image_ids: pd.Series, limit: int = 5) -> str:
    """Up to ``limit`` ids joined by commas, with a count of the rest (for error messages)."""
    values = image_ids.astype(str).tolist()
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def check_predictions(
    pred_df: pd.DataFrame, alloys: Sequence[str] = ALLOYS, name: str = "predictions"
) -> None:
    """Raise ``ValueError`` unless ``pred_df`` satisfies the classification part of the predictions contract.

    Checks the required columns, that ``alloy_pred`` and the non-missing ``alloy_true`` values are alloys,
    and that every probability row is finite, within [0, 1] and sums to 1; messages name ``name``, the
    column and the offending image ids.
    """
    required = ["image_id", "alloy_true", "alloy_pred", *prob_columns(alloys)]
    missing = [column for column in required if column not in pred_df.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}; expected {required}")
    if pred_df.empty:
        raise ValueError(f"{name}: no rows")
    allowed = set(alloys)
    for column in ("alloy_true", "alloy_pred"):
        values = pred_df[column]
        present = values.notna() if column == "alloy_true" else pd.Series(True, index=pred_df.index)
        bad = present & ~values.astype(str).isin(allowed)
        if bad.any():
            raise ValueError(
                f"{name}: column {column!r} has values {sorted(set(values[bad].astype(str)))} outside "
                f"{list(alloys)} (image_id {examples_text(pred_df.loc[bad, 'image_id'])})"
            )
    probs = pred_df[prob_columns(alloys)].to_numpy(dtype=float)
    bad_rows = (
        ~np.isfinite(probs).all(axis=1)
        | (probs < 0).any(axis=1)
        | (probs > 1).any(axis=1)
        | (np.abs(probs.sum(axis=1) - 1.0) > PROB_SUM_TOLERANCE)
    )
    if bad_rows.any():
        raise ValueError(
            f"{name}: probability columns {prob_columns(alloys)} must be finite, in [0, 1] and sum to 1 per "
            f"row; {int(bad_rows.sum())} rows do not (image_id {examples_text(pred_df.loc[bad_rows, 'image_id'])})"
        )


def labelled_rows(pred_df: pd.DataFrame, name: str = "predictions") -> pd.DataFrame:
    """Rows of ``pred_df`` whose ``alloy_true`` is present (missing labels are skipped with a warning)."""
    has_label = pred_df["alloy_true"].notna()
    if not has_label.all():
        logger.warning("%s: skipping %d rows without alloy_true", name, int((~has_label).sum()))
    if not has_label.any():
        raise ValueError(f"{name}: no row has an alloy_true label")
    return pred_df.loc[has_label]


def label_indices(labels: pd.Series | Sequence[str], alloys: Sequence[str] = ALLOYS) -> np.ndarray:
    """Class indices (position in ``alloys``) of alloy labels; unknown labels raise ``ValueError``."""
    lookup = {alloy: index for index, alloy in enumerate(alloys)}
    values = pd.Series(labels).astype(str)
    unknown = sorted(set(values) - set(lookup))
    if unknown:
        raise ValueError(f"alloy labels {unknown} are not among {list(alloys)}")
    return values.map(lookup).to_numpy(dtype=np.int64)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error: sum over bins of |accuracy - confidence| x bin share.

    Uses the bins of :func:`reliability_bins`, the binning of torchmetrics' ``MulticlassCalibrationError``
    (``norm="l1"``) except that a confidence of exactly 1 joins the last bin instead of an extra one.
    Written with numpy so that evaluation does not import torch (seconds per process).
    """
    stats = reliability_bins(probs, y_true, n_bins)
    filled = stats["count"] > 0
    share = stats["count"][filled] / stats["count"].sum()
    return float(np.sum(np.abs(stats["accuracy"][filled] - stats["confidence"][filled]) * share))


def probs_at_temperature(
    pred_df: pd.DataFrame, temperature: float, alloys: Sequence[str] = ALLOYS
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, label indices) of the labelled rows of ``pred_df`` had the model answered at
    ``temperature`` times its own: ``p = softmax(z / T)`` gives back ``softmax(z / T') = softmax((T / T') log p)``
    (softmax ignores the per-row constant between ``log p`` and the logits), with ``temperature = T / T'``."""
    labelled = labelled_rows(pred_df)
    log_p = np.log(np.clip(labelled[prob_columns(alloys)].to_numpy(dtype=np.float64), 1e-300, None))
    scaled = temperature * log_p
    probs = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, label_indices(labelled["alloy_true"], alloys)


def ece_at_temperature(pred_df: pd.DataFrame, temperature: float, alloys: Sequence[str] = ALLOYS) -> float:
    """ECE of :func:`probs_at_temperature`: with ``temperature`` = the fitted T, the ECE before calibration."""
    return expected_calibration_error(*probs_at_temperature(pred_df, temperature, alloys))


def _per_class_ranking(
    y_true: np.ndarray, probs: np.ndarray, alloys: Sequence[str]
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    ap: dict[str, float | None] = {}
    auc: dict[str, float | None] = {}
    for index, alloy in enumerate(alloys):
        positives = y_true == index
        if not positives.any():
            logger.warning("alloy %s is absent from the test set: AP and ROC-AUC undefined (None)", alloy)
            ap[alloy] = auc[alloy] = None
            continue
        ap[alloy] = float(average_precision_score(positives, probs[:, index]))
        if positives.all():
            logger.warning("alloy %s is the only class in the test set: ROC-AUC undefined (None)", alloy)
            auc[alloy] = None
        else:
            auc[alloy] = float(roc_auc_score(positives, probs[:, index]))
    return ap, auc


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # Mean recall over the alloys present in the test set; absent alloys were already logged.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y_true, y_pred))


def _mean_defined(values: dict[str, float | None]) -> float | None:
    defined = [value for value in values.values() if value is not None]
    return float(np.mean(defined)) if defined else None


def classification_metrics(
    pred_df: pd.DataFrame, alloys: Sequence[str] = ALLOYS, ece_bins: int = ECE_BINS
) -> dict[str, Any]:
    """Alloy classification metrics of a predictions table, as a JSON-able dict.

    Keys: ``alloys``, ``n_samples``, ``support`` (test count per alloy), ``accuracy``,
    ``balanced_accuracy``, ``macro_f1``, ``ap`` (per alloy, one-vs-rest average precision),
    ``macro_ap`` (mean over alloys with a defined AP), ``roc_auc`` (per alloy), ``macro_roc_auc``,
    ``ece`` (top-label expected calibration error, ``ece_bins`` equal-width bins),
    ``confusion_matrix`` (rows true, columns predicted, counts), ``confusion_matrix_normalized``
    (divided by the true-row total; ``None`` rows for alloys absent from the test set) and
    ``classification_report`` (scikit-learn's dict). Undefined values are ``None``.
    """
    alloys = list(alloys)
    check_predictions(pred_df, alloys)
    rows = labelled_rows(pred_df)
    y_true = label_indices(rows["alloy_true"], alloys)
    y_pred = label_indices(rows["alloy_pred"], alloys)
    probs = rows[prob_columns(alloys)].to_numpy(dtype=float)
    labels = list(range(len(alloys)))

    ap, auc = _per_class_ranking(y_true, probs, alloys)
    raw = confusion_matrix(y_true, y_pred, labels=labels)
    row_totals = raw.sum(axis=1, keepdims=True)
    normalized = np.where(row_totals > 0, raw / np.maximum(row_totals, 1), np.nan)
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=alloys, output_dict=True, zero_division=np.nan
    )
    result = {
        "alloys": alloys,
        "n_samples": len(rows),
        "support": dict(zip(alloys, raw.sum(axis=1).tolist(), strict=True)),
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=np.nan),
        "ap": ap,
        "macro_ap": _mean_defined(ap),
        "roc_auc": auc,
        "macro_roc_auc": _mean_defined(auc),
        "ece": expected_calibration_error(probs, y_true, ece_bins),
        "ece_bins": ece_bins,
        "confusion_matrix": raw,
        "confusion_matrix_normalized": normalized,
        "classification_report": report,
    }
    return to_jsonable(result)


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Top-label reliability statistics per equal-width confidence bin (for the reliability diagram).

    Returns arrays of length ``n_bins``: ``edges`` (``n_bins + 1``), ``confidence`` and ``accuracy``
    (mean per bin, NaN for empty bins) and ``count``. Bins are ``[lo, hi)``, with confidence 1 in the last.
    """
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / count
        mean_acc = np.bincount(index, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "confidence": mean_conf, "accuracy": mean_acc, "count": count}
