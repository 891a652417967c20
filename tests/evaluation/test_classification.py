"""Classification metrics: perfect classifier, agreement with scikit-learn, hand-computed AP and ECE."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.classification import (
    check_predictions,
    classification_metrics,
    label_indices,
    reliability_bins,
)
from tests.evaluation.helpers import predictions_from_probs


def _two_class_table(probs_first: list[float], labels_first: list[int]) -> pd.DataFrame:
    """Rows of alloy 1050 (label 1) or 2017 (label 0), ``prob_1050`` = score, ``prob_2017`` = 1 - score."""
    probs = np.zeros((len(probs_first), len(ALLOYS)))
    probs[:, 0] = probs_first
    probs[:, 1] = 1.0 - np.asarray(probs_first)
    y_true = np.where(np.asarray(labels_first) == 1, 0, 1)
    return predictions_from_probs(probs, y_true)


def test_perfect_classifier_scores_one_everywhere() -> None:
    y = np.repeat(np.arange(len(ALLOYS)), 4)
    metrics = classification_metrics(predictions_from_probs(np.eye(len(ALLOYS))[y], y))

    assert metrics["ap"] == {alloy: 1.0 for alloy in ALLOYS}
    assert metrics["roc_auc"] == {alloy: 1.0 for alloy in ALLOYS}
    assert metrics["macro_ap"] == metrics["accuracy"] == metrics["balanced_accuracy"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["ece"] == pytest.approx(0.0, abs=1e-7)
    assert metrics["confusion_matrix"] == (4 * np.eye(len(ALLOYS), dtype=int)).tolist()
    assert metrics["confusion_matrix_normalized"] == np.eye(len(ALLOYS)).tolist()


def test_metrics_match_scikit_learn(make_predictions) -> None:
    frame = make_predictions(n=150, seed=3)
    metrics = classification_metrics(frame)

    y_true = frame["alloy_true"].map({a: i for i, a in enumerate(ALLOYS)}).to_numpy()
    y_pred = frame["alloy_pred"].map({a: i for i, a in enumerate(ALLOYS)}).to_numpy()
    probs = frame[[f"prob_{a}" for a in ALLOYS]].to_numpy()
    expected_ap = [average_precision_score(y_true == k, probs[:, k]) for k in range(len(ALLOYS))]
    expected_auc = [roc_auc_score(y_true == k, probs[:, k]) for k in range(len(ALLOYS))]

    assert [metrics["ap"][a] for a in ALLOYS] == pytest.approx(expected_ap, abs=1e-12)
    assert metrics["macro_ap"] == pytest.approx(np.mean(expected_ap), abs=1e-12)
    assert [metrics["roc_auc"][a] for a in ALLOYS] == pytest.approx(expected_auc, abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    row_sums = np.asarray(metrics["confusion_matrix"]).sum(axis=1)
    assert np.allclose(
        metrics["confusion_matrix_normalized"], confusion_matrix(y_true, y_pred) / row_sums[:, None]
    )
    assert metrics["classification_report"]["1050"]["support"] == int((y_true == 0).sum())
    assert metrics["n_samples"] == 150
    assert 0.0 < metrics["accuracy"] < 1.0


def test_hand_computed_ap_and_auc_with_absent_classes(caplog) -> None:
    # Ranking 0.9(+) 0.8(-) 0.3(+) 0.1(-): AP = 0.5 * 1 + 0.5 * 2/3 = 5/6; AUC = 3 of 4 pairs ordered.
    frame = _two_class_table([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
    with caplog.at_level(logging.WARNING):
        metrics = classification_metrics(frame)

    assert metrics["ap"]["1050"] == pytest.approx(5 / 6)
    assert metrics["roc_auc"]["1050"] == pytest.approx(0.75)
    assert metrics["ap"]["5083"] is None and metrics["roc_auc"]["7075"] is None
    assert metrics["macro_ap"] == pytest.approx(5 / 6)  # 2017 mirrors 1050: also 5/6
    assert metrics["accuracy"] == pytest.approx(0.5)  # predictions: 1050, 1050, 2017, 2017
    assert metrics["confusion_matrix_normalized"][2] == [None] * len(ALLOYS)
    assert "5083 is absent" in caplog.text
    json.dumps(metrics, allow_nan=False)


def test_ece_of_calibrated_and_overconfident_toys() -> None:
    # Calibrated: ten predictions at confidence 0.8, eight of them right.
    probs = np.tile([0.8, 0.05, 0.05, 0.05, 0.05], (10, 1))
    y_true = np.array([0] * 8 + [1, 2])
    assert classification_metrics(predictions_from_probs(probs, y_true))["ece"] == pytest.approx(
        0.0, abs=1e-6
    )

    # Overconfident: two at 0.9 both right (gap 0.1), two at 0.55 both wrong (gap 0.55): ECE = 0.325.
    probs = np.array([[0.9, 0.1, 0, 0, 0]] * 2 + [[0.55, 0.45, 0, 0, 0]] * 2)
    y_true = np.array([0, 0, 1, 1])
    metrics = classification_metrics(predictions_from_probs(probs, y_true))
    assert metrics["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.55, abs=1e-6)

    bins = reliability_bins(probs, y_true, n_bins=15)
    filled = np.flatnonzero(bins["count"])
    assert filled.tolist() == [8, 13]  # 0.55 in [8/15, 9/15), 0.9 in [13/15, 14/15)
    assert bins["accuracy"][filled].tolist() == [0.0, 1.0]
    assert bins["confidence"][filled] == pytest.approx([0.55, 0.9])


def test_missing_true_labels_are_skipped(make_predictions) -> None:
    frame = make_predictions(n=60, regression=False)
    reduced = classification_metrics(frame.iloc[2:])
    frame.loc[[0, 1], "alloy_true"] = None
    assert classification_metrics(frame)["accuracy"] == pytest.approx(reduced["accuracy"])
    assert classification_metrics(frame)["n_samples"] == 58


def test_bad_predictions_raise_clear_errors(make_predictions) -> None:
    frame = make_predictions(n=20, regression=False)
    with pytest.raises(ValueError, match="missing columns.*prob_7075"):
        check_predictions(frame.drop(columns="prob_7075"))
    broken = frame.copy()
    broken.loc[4, "prob_1050"] += 0.2
    with pytest.raises(ValueError, match="sum to 1.*img004"):
        classification_metrics(broken)
    broken = frame.copy()
    broken.loc[2, "alloy_true"] = "9999"
    with pytest.raises(ValueError, match=r"alloy_true.*\['9999'\].*img002"):
        classification_metrics(broken)
    with pytest.raises(ValueError, match="not among"):
        label_indices(["1050", "x"])


@pytest.mark.slow
def test_ece_matches_torchmetrics(make_predictions) -> None:
    """Cross-check against torchmetrics (marked slow only for its import, several seconds on 2 cores)."""
    import torch
    from torchmetrics.classification import MulticlassCalibrationError

    frame = make_predictions(n=300, seed=5, regression=False)
    probs = frame[[f"prob_{a}" for a in ALLOYS]].to_numpy()
    y_true = label_indices(frame["alloy_true"])
    expected = MulticlassCalibrationError(num_classes=len(ALLOYS), n_bins=15, norm="l1")(
        torch.tensor(probs), torch.tensor(y_true)
    )
    assert classification_metrics(frame)["ece"] == pytest.approx(float(expected), abs=1e-6)
    assert classification_metrics(frame)["ece"] > 0.01
