"""Regression metrics and many/medium/few-shot regions on hand-made histograms."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from alloy_mtl.evaluation.regression import (
    alloy_shot_groups,
    classification_shot_metrics,
    regression_metrics,
    shot_bin_edges,
    shot_groups,
)

# Three unit bins over the training range [0, 3]: 151, 50 and 6 training labels.
TRAIN = np.r_[np.full(150, 0.5), 0.0, np.full(50, 1.5), np.full(5, 2.5), 3.0]


def test_bin_edges_span_the_training_range() -> None:
    assert shot_bin_edges(TRAIN, bins=3).tolist() == [0.0, 1.0, 2.0, 3.0]
    assert shot_bin_edges([np.nan, 1.0, 5.0], bins=4).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(ValueError, match="strictly increasing"):
        shot_bin_edges(TRAIN, bins=[0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="no finite training label"):
        shot_bin_edges([np.nan], bins=3)


def test_shot_groups_follow_training_counts_of_each_bin() -> None:
    test = [0.2, 1.0, 1.99, 2.9, 3.0, 3.5, -0.1]
    groups = shot_groups(test, TRAIN, thresholds={"many": 100, "few": 20}, bins=3)
    # 1.0 opens bin [1, 2); 3.0 is the closed end of the last bin; outside the range -> no label -> few.
    assert groups.tolist() == ["many", "medium", "medium", "few", "few", "few", "few"]

    lower = shot_groups(test, TRAIN, thresholds={"many": 40, "few": 5}, bins=3)
    assert lower.tolist() == ["many", "many", "many", "medium", "medium", "few", "few"]

    # Boundaries: exactly "many" training labels is medium, exactly "few" is medium too.
    assert shot_groups([0.5, 1.5], TRAIN, thresholds={"many": 151, "few": 50}, bins=3).tolist() == [
        "medium",
        "medium",
    ]


def test_shot_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="'many' and 'few'"):
        shot_groups([1.0], TRAIN, thresholds={"many": 10}, bins=3)
    with pytest.raises(ValueError, match="must not exceed"):
        shot_groups([1.0], TRAIN, thresholds={"many": 10, "few": 20}, bins=3)


def test_regression_metrics_match_scikit_learn_per_region() -> None:
    rng = np.random.default_rng(0)
    y_true = np.r_[rng.uniform(0, 1, 8), rng.uniform(1, 2, 6), rng.uniform(2, 3, 4), np.nan, np.nan]
    y_pred = y_true + rng.normal(0, 0.2, y_true.size)
    y_pred[-2:] = [1.0, np.nan]  # unlabelled rows: their predictions are ignored, even NaN

    metrics = regression_metrics(y_true, y_pred, TRAIN, thresholds={"many": 100, "few": 20}, bins=3)

    labelled = ~np.isnan(y_true)
    t, p = y_true[labelled], y_pred[labelled]
    assert metrics["overall"] == pytest.approx(
        {
            "n": 18,
            "r2": r2_score(t, p),
            "mae": mean_absolute_error(t, p),
            "rmse": root_mean_squared_error(t, p),
        }
    )
    for group, part in (("many", slice(0, 8)), ("medium", slice(8, 14)), ("few", slice(14, 18))):
        assert metrics[group]["n"] == part.stop - part.start
        assert metrics[group]["mae"] == pytest.approx(mean_absolute_error(t[part], p[part]))
        assert metrics[group]["r2"] == pytest.approx(r2_score(t[part], p[part]))
    assert metrics["n_missing_labels"] == 2
    assert metrics["bin_edges"] == [0.0, 1.0, 2.0, 3.0]


def test_regression_metrics_undefined_values_and_errors() -> None:
    metrics = regression_metrics([0.5, 0.6], [0.4, 0.8], TRAIN, bins=3)
    assert metrics["few"] == {"n": 0, "r2": None, "mae": None, "rmse": None}
    one = regression_metrics([0.5], [0.7], TRAIN, bins=3)["overall"]
    assert one["r2"] is None and one["mae"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="thickness: y_pred is not finite at positions \\[1\\]"):
        regression_metrics([0.5, 0.6], [0.4, np.nan], TRAIN, bins=3, name="thickness")
    with pytest.raises(ValueError, match="3 values but y_pred has 2"):
        regression_metrics([0.5, 0.6, 0.7], [0.4, 0.3], TRAIN, bins=3)


def test_alloy_shot_groups_and_accuracy_per_group() -> None:
    train = ["1050"] * 150 + ["2017"] * 50 + ["5083"] * 19 + ["6082"] * 20 + [None] * 3
    groups = alloy_shot_groups(train)
    assert groups == {"1050": "many", "2017": "medium", "5083": "few", "6082": "medium", "7075": "few"}

    y_true = ["1050", "1050", "2017", "6082", "6082", "5083", "7075", None]
    y_pred = ["1050", "2017", "2017", "6082", "1050", "1050", "7075", "1050"]
    metrics = classification_shot_metrics(y_true, y_pred, train)
    assert metrics["many"] == {"alloys": ["1050"], "n": 2, "accuracy": 0.5}
    assert metrics["medium"] == {"alloys": ["2017", "6082"], "n": 3, "accuracy": pytest.approx(2 / 3)}
    assert metrics["few"] == {"alloys": ["5083", "7075"], "n": 2, "accuracy": 0.5}
    assert metrics["train_counts"]["7075"] == 0

    with pytest.raises(ValueError, match="'1234'"):
        alloy_shot_groups(["1050", "1234"])
