"""Soft and hard voting on a hand-made three-model example, alignment by image_id and its errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.classification import check_predictions, classification_metrics
from alloy_mtl.evaluation.ensemble import ensemble_predictions, hard_vote, regression_members, soft_vote
from tests.evaluation.helpers import predictions_from_probs

# Rows: image a (2 of 3 vote 2017, mean favours 1050), image b (three-way tie 1050/2017/5083 while the
# mean favours 6082, which nobody voted for), image c (unanimous 7075). True labels: 1050, 2017, 7075.
PROBS = {
    "m1": [[0.90, 0.10, 0, 0, 0], [0.40, 0, 0, 0.35, 0.25], [0, 0, 0, 0.2, 0.8]],
    "m2": [[0.40, 0.60, 0, 0, 0], [0, 0.42, 0, 0.33, 0.25], [0, 0, 0, 0.4, 0.6]],
    "m3": [[0.45, 0.55, 0, 0, 0], [0, 0, 0.41, 0.34, 0.25], [0.1, 0, 0, 0.2, 0.7]],
}
Y_TRUE = np.array([0, 1, 4])


def _models() -> dict[str, pd.DataFrame]:
    models = {
        name: predictions_from_probs(np.array(p), Y_TRUE, ids=["a", "b", "c"]) for name, p in PROBS.items()
    }
    for offset, frame in enumerate(models.values()):
        frame["thickness_mm_true"] = [1.0, np.nan, 3.0]
        frame["thickness_mm_pred"] = np.array([1.0, 2.0, 3.0]) + offset
    models["m1"]["absorption_true"] = models["m2"]["absorption_true"] = [0.5, 0.6, 0.7]
    models["m1"]["absorption_pred"], models["m2"]["absorption_pred"] = [0.4, 0.6, 0.8], [0.6, 0.8, 1.0]
    models["m2"] = models["m2"].iloc[[2, 0, 1]]  # row order differs: alignment is by image_id
    return models


def test_soft_and_hard_voting_by_hand() -> None:
    soft, hard = soft_vote(_models()), hard_vote(_models())

    assert soft["image_id"].tolist() == hard["image_id"].tolist() == ["a", "b", "c"]
    assert soft["alloy_pred"].tolist() == ["1050", "6082", "7075"]
    assert hard["alloy_pred"].tolist() == [
        "2017",
        "2017",
        "7075",
    ]  # b: tie broken by mean 0.14 > 0.137 > 0.133
    mean_b = (np.array(PROBS["m1"][1]) + PROBS["m2"][1] + PROBS["m3"][1]) / 3
    np.testing.assert_allclose(soft.loc[1, [f"prob_{a}" for a in ALLOYS]].to_numpy(float), mean_b)
    pd.testing.assert_frame_equal(soft.drop(columns="alloy_pred"), hard.drop(columns="alloy_pred"))
    assert soft["thickness_mm_pred"].tolist() == [2.0, 3.0, 4.0]
    assert soft["absorption_pred"].tolist() == pytest.approx([0.5, 0.7, 0.9])  # m3 has no absorption
    assert soft["thickness_mm_true"].tolist()[::2] == [1.0, 3.0] and np.isnan(
        soft.loc[1, "thickness_mm_true"]
    )
    assert soft["alloy_true"].tolist() == ["1050", "2017", "7075"]

    check_predictions(soft)
    assert classification_metrics(soft)["accuracy"] == pytest.approx(2 / 3)
    assert classification_metrics(hard)["accuracy"] == pytest.approx(2 / 3)


def test_mismatched_image_ids_name_the_model() -> None:
    models = _models()
    models["m3"] = models["m3"].assign(image_id=["a", "b", "zz"])
    with pytest.raises(
        ValueError, match=r"model 'm3' predicted a different set of images.*1 missing \(c\).*1 extra \(zz\)"
    ):
        ensemble_predictions(models)


def test_inconsistent_inputs_name_the_model() -> None:
    models = _models()
    models["m2"] = models["m2"].assign(alloy_true=["7075", "1050", "5083"])
    with pytest.raises(ValueError, match="model 'm2' has a different alloy_true.*b"):
        soft_vote(models)
    models = _models()
    models["m3"] = pd.concat([models["m3"], models["m3"].iloc[[0]]])
    with pytest.raises(ValueError, match="model 'm3' has duplicated image_id a"):
        soft_vote(models)
    models = _models()
    models["m2"] = models["m2"].drop(columns="prob_1050")
    with pytest.raises(ValueError, match="model 'm2': missing columns"):
        hard_vote(models)
    with pytest.raises(ValueError, match="method 'median'"):
        ensemble_predictions(_models(), method="median")
    with pytest.raises(ValueError, match="no model"):
        ensemble_predictions({})


def test_a_regression_head_far_worse_on_validation_is_left_out_of_that_targets_average(caplog) -> None:
    val_mae = {
        "m1": {"thickness_mm": 0.20, "absorption": 0.05},
        "m2": {"thickness_mm": 0.30, "absorption": 0.50},  # its absorption head failed
        "m3": {"thickness_mm": 9.00},  # and m3's thickness head
    }
    kept = regression_members(val_mae, tolerance=2.0)
    assert kept == {"absorption": ["m1"], "thickness_mm": ["m1", "m2"]}
    assert "left out ['m3']" in caplog.text and "left out ['m2']" in caplog.text
    assert regression_members(val_mae, tolerance=None)["thickness_mm"] == ["m1", "m2", "m3"]
    assert regression_members({"m1": {"absorption": float("nan")}, "m2": {"absorption": 0.1}}) == {
        "absorption": ["m2"]
    }

    gated = ensemble_predictions(_models(), "soft", regression=kept)
    assert gated["thickness_mm_pred"].tolist() == [1.5, 2.5, 3.5]  # m1 and m2 only (m3 adds 2)
    assert gated["absorption_pred"].tolist() == pytest.approx([0.4, 0.6, 0.8])  # m1 alone
    plain = ensemble_predictions(_models(), "soft")
    pd.testing.assert_frame_equal(gated.filter(like="prob_"), plain.filter(like="prob_"))  # voting unchanged


def test_the_ensemble_node_reads_each_models_validation_errors_from_its_training_summary() -> None:
    from alloy_mtl.pipelines.evaluation.nodes import SUMMARY_PREFIX, ensemble_architectures

    summaries = {
        f"{SUMMARY_PREFIX}m1": {"val_mae": {"thickness_mm": 0.2}},
        f"{SUMMARY_PREFIX}m2": {"val_mae": {"thickness_mm": 0.3}},
        f"{SUMMARY_PREFIX}m3": {"val_mae": {"thickness_mm": 5.0}},
    }
    soft, hard = ensemble_architectures({}, **_models(), **summaries)
    assert soft["thickness_mm_pred"].tolist() == hard["thickness_mm_pred"].tolist() == [1.5, 2.5, 3.5]
    every, _ = ensemble_architectures({"ensemble_regression_tolerance": None}, **_models(), **summaries)
    assert every["thickness_mm_pred"].tolist() == [2.0, 3.0, 4.0]
    older, _ = ensemble_architectures({}, **_models(), **{k: {} for k in summaries})  # no val_mae: all kept
    assert older["thickness_mm_pred"].tolist() == [2.0, 3.0, 4.0]
