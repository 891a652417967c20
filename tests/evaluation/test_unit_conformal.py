"""Conformal sets refitted on labelled images from the detector in operation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.evaluation.unit_conformal import (
    FITTED_ON_COLUMN,
    UnitConformalParams,
    UnitSets,
    cross_fitted_check,
    fewest_per_class,
    fit_unit_sets,
    refit_record,
    specimen_folds,
    unit_conformal_markdown,
)
from alloy_mtl.mtl.models.conformal import conformal_quantile

CLASSES = ["1050", "2017", "5083", "6082", "7075"]


def _answers(n: int, seed: int, sharpness: float = 2.0, shift: float = 0.0) -> pd.DataFrame:
    """A model's answers on a unit: the true class's logit raised by ``sharpness``, every image's logits of
    5083 raised by ``shift`` (a unit that pulls the scores), two images per specimen."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(CLASSES), n)
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[np.arange(n), truth] += sharpness
    logits[:, 2] += shift
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({f"prob_{c}": probs[:, i] for i, c in enumerate(CLASSES)})
    frame["alloy"] = np.asarray(CLASSES)[probs.argmax(axis=1)]
    frame["alloy_true"] = np.asarray(CLASSES)[truth]
    frame["alloy_set"] = frame["alloy"]  # shipped sets: the top answer only (undercover)
    frame["alloy_set_size"] = 1
    frame["thickness_mm_true"] = rng.uniform(2, 20, n)
    frame["thickness_mm"] = frame["thickness_mm_true"] + rng.normal(scale=0.5, size=n)
    frame["thickness_mm_low"] = frame["thickness_mm"] - 0.1
    frame["thickness_mm_high"] = frame["thickness_mm"] + 0.1
    frame["absorption_true"] = np.nan  # not known for the lab's specimens
    frame["absorption"] = rng.uniform(0, 1, n)
    frame["absorption_low"] = frame["absorption"] - 0.05
    frame["absorption_high"] = frame["absorption"] + 0.05
    frame["specimen"] = np.arange(n) // 2
    return frame


def test_the_refit_thresholds_are_each_alloys_conformal_quantile_and_unlabelled_targets_keep_the_models():
    frame = _answers(400, seed=1)
    sets = fit_unit_sets(frame, CLASSES, ["thickness_mm", "absorption"], 0.9, fitted_on="/lab/unit7")
    for alloy in CLASSES:
        rows = frame["alloy_true"] == alloy
        assert sets.class_counts[alloy] == int(rows.sum())
        assert sets.class_quantiles[alloy] == conformal_quantile(1 - frame.loc[rows, f"prob_{alloy}"], 0.9)
    residuals = np.abs(frame["thickness_mm_true"] - frame["thickness_mm"])
    assert sets.half_widths == {"thickness_mm": conformal_quantile(residuals, 0.9)}
    assert UnitSets.from_dict(sets.to_dict()) == sets

    applied = sets.apply(frame)
    member = applied["alloy_set"].str.split("|")
    for alloy in CLASSES:
        expected = 1 - frame[f"prob_{alloy}"] <= sets.class_quantiles[alloy]
        assert (member.apply(lambda m, a=alloy: a in m) == expected).all()
    assert (applied["alloy_set_size"] == member.apply(len)).all()
    width = sets.half_widths["thickness_mm"]
    np.testing.assert_allclose(applied["thickness_mm_high"] - applied["thickness_mm"], width)
    pd.testing.assert_series_equal(applied["absorption_low"], frame["absorption_low"])  # no labels: kept
    assert (applied[FITTED_ON_COLUMN] == "/lab/unit7").all()


def test_rows_the_model_did_not_answer_keep_their_empty_answers():
    frame = _answers(100, seed=2)
    frame.loc[3, [f"prob_{c}" for c in CLASSES]] = np.nan
    frame.loc[3, ["alloy_set", "thickness_mm", "thickness_mm_low", "thickness_mm_high"]] = [
        None,
        np.nan,
        np.nan,
        np.nan,
    ]
    applied = fit_unit_sets(frame.drop(index=3), CLASSES, ["thickness_mm"], 0.9).apply(frame)
    assert pd.isna(applied.loc[3, "alloy_set"]) and np.isnan(applied.loc[3, "thickness_mm_low"])
    assert applied.loc[3, FITTED_ON_COLUMN] == ""
    assert applied.loc[4, "alloy_set"] != ""


def test_labels_the_model_lacks_and_alloys_with_too_few_images_are_refused_together():
    frame = _answers(200, seed=3)
    frame.loc[:3, "alloy_true"] = "2024"
    keep = ~((frame["alloy_true"] == "2017") & (frame.index > 20)) & ~(
        (frame["alloy_true"] == "7075") & (frame.index > 40)
    )
    short = frame[keep]
    counts = short["alloy_true"].value_counts()
    assert fewest_per_class(0.9) == 9 and counts["2017"] < 9 and counts["7075"] < 9
    with pytest.raises(ValueError) as raised:
        fit_unit_sets(short, CLASSES, ["thickness_mm"], 0.9)
    message = str(raised.value)
    assert "['2024'] are not among the model's classes" in message
    assert f"2017 has {counts['2017']}" in message and f"7075 has {counts['7075']}" in message
    assert "at least 9 each" in message and "1050 has" not in message
    assert fewest_per_class(0.8) == 4 and fewest_per_class(0.95) == 19


def test_the_cross_fitted_refit_covers_each_alloy_near_its_target_where_the_shipped_sets_do_not():
    frame = _answers(3000, seed=4, shift=1.5)
    check = cross_fitted_check(
        frame, CLASSES, ["thickness_mm", "absorption"], 0.9, groups=frame["specimen"], folds=5, seed=0
    )
    assert check["specimens"] == 1500 and check["folds"] == 5
    for alloy, row in check["per_class"].items():
        assert abs(row["refit_coverage"] - 0.9) < 0.04, (alloy, row)
        assert row["shipped_set_size"] == 1.0
    assert min(row["shipped_coverage"] for row in check["per_class"].values()) < 0.6
    assert check["intervals"]["thickness_mm"]["shipped_coverage"] < 0.3
    assert abs(check["intervals"]["thickness_mm"]["refit_coverage"] - 0.9) < 0.03
    assert "absorption" not in check["intervals"]  # no labels, nothing measured
    report = unit_conformal_markdown(
        {**fit_unit_sets(frame, CLASSES, ["thickness_mm"], 0.9).to_dict(), "check": check}
    )
    assert report.count("\n| ") == 1 + len(CLASSES) + 1 + 1
    assert "5 specimen folds" in report


def test_every_image_of_a_specimen_lands_in_one_fold_and_the_folds_are_even():
    groups = np.repeat(np.arange(50), 3)[np.random.default_rng(0).permutation(150)]
    fold = specimen_folds(groups, 5, seed=3)
    for specimen in range(50):
        assert len(set(fold[groups == specimen])) == 1
    assert sorted(np.bincount(fold)) == [30] * 5
    assert not np.array_equal(fold, specimen_folds(groups, 5, seed=4))
    assert set(specimen_folds([7, 7, 8], 5)) == {0, 1}  # at most one fold per specimen, at least two folds


def test_the_record_advises_against_a_refit_on_fewer_images_than_the_benchmark_found_worthwhile():
    params = UnitConformalParams(folds=3)
    many = _answers(1500, seed=6)
    record = refit_record(
        many, CLASSES, many["specimen"], params, fitted_on="/lab/u", model_uri="models:/m@c"
    )
    assert record["advice"] == "" and record["model_uri"] == "models:/m@c" and record["check"]["folds"] == 3
    few = _answers(600, seed=6)
    counts = few["alloy_true"].value_counts()
    advice = refit_record(few, CLASSES, few["specimen"], params, fitted_on="/lab/u", model_uri="m")["advice"]
    assert advice.startswith("fewer than 200 labelled images of ")
    assert all(f"{alloy} ({n})" in advice for alloy, n in counts.items())
