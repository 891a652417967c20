"""Specimen-level bootstrap intervals: exact weighted AP, specimens move together, intervals shrink with data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from alloy_mtl.evaluation.bootstrap import (
    classification_intervals,
    r2_interval,
    specimen_weights,
    weighted_average_precision,
)

ALLOYS = ["a", "b", "c"]


def _predictions(n_specimens: int, per_specimen: int = 3, noise: float = 1.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = np.repeat(rng.integers(0, 3, n_specimens), per_specimen)
    logits = np.eye(3)[truth] * 2.0 + noise * rng.standard_normal((truth.size, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    frame = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(truth.size)],
            "specimen_id": np.repeat([f"s{k}" for k in range(n_specimens)], per_specimen),
            "alloy_true": np.asarray(ALLOYS)[truth],
            "alloy_pred": np.asarray(ALLOYS)[probs.argmax(1)],
        }
    )
    for k, alloy in enumerate(ALLOYS):
        frame[f"prob_{alloy}"] = probs[:, k]
    return frame


def test_weighted_ap_equals_sklearn_with_sample_weights():
    rng = np.random.default_rng(1)
    positive, scores = rng.random(200) < 0.3, rng.random(200)
    weights = rng.integers(0, 4, (5, 200)).astype(float)
    ours = weighted_average_precision(positive, scores, weights)
    for row, value in zip(weights, ours, strict=True):
        assert value == pytest.approx(average_precision_score(positive, scores, sample_weight=row))


def test_images_of_a_specimen_are_drawn_together():
    groups = np.repeat(["x", "y", "z", "w"], [1, 2, 3, 4])
    weights = specimen_weights(groups, 50, seed=3)
    for specimen in "xyzw":
        block = weights[:, groups == specimen]
        assert (block == block[:, :1]).all()
    assert weights.sum(axis=1).mean() == pytest.approx(10, rel=0.3)  # four specimens drawn per resample


def test_intervals_bracket_the_estimate_shrink_with_more_specimens_and_are_reproducible():
    small = classification_intervals(_predictions(20), ALLOYS, n_resamples=400, seed=0)
    large = classification_intervals(_predictions(400), ALLOYS, n_resamples=400, seed=0)
    width = {name: r["macro_ap"][1] - r["macro_ap"][0] for name, r in (("small", small), ("large", large))}
    assert width["large"] < width["small"] / 2
    frame = _predictions(400)
    point = np.mean([average_precision_score(frame["alloy_true"] == a, frame[f"prob_{a}"]) for a in ALLOYS])
    assert large["macro_ap"][0] <= point <= large["macro_ap"][1]
    assert classification_intervals(_predictions(20), ALLOYS, n_resamples=400, seed=0) == small
    assert small["n_specimens"] == 20


def test_duplicated_images_of_one_specimen_do_not_narrow_the_interval():
    one = _predictions(30, per_specimen=1, seed=4)
    five = one.loc[one.index.repeat(5)].reset_index(drop=True)  # five copies of each image, same specimen
    a = classification_intervals(one, ALLOYS, n_resamples=300, seed=2)["accuracy"]
    b = classification_intervals(five, ALLOYS, n_resamples=300, seed=2)["accuracy"]
    assert b == pytest.approx(a)


def test_r2_interval_skips_missing_labels():
    rng = np.random.default_rng(0)
    true = rng.random(60) * 5
    pred = true + 0.1 * rng.standard_normal(60)
    true[::7] = np.nan
    low, high = r2_interval(true, pred, np.repeat(np.arange(20), 3), n_resamples=300)
    assert 0.95 < low < high <= 1.0
