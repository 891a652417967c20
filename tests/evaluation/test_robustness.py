"""The robustness suite: condition parsing, the same specimens under every condition, the scores table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.config import ParameterError, parse_params
from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation import robustness
from alloy_mtl.evaluation.params import UNSEEN_DETECTOR_SEEDS, EvaluationParams, RobustnessParams
from alloy_mtl.physics.simulator import SimulationConfig, plan_dataset
from alloy_mtl.tracking import layout
from tests.evaluation.helpers import predictions_from_probs

GENERATION = {"seed": 7, "n_images": 60, "image_size": 8, "images_per_specimen": 3, "min_images_per_class": 6}


def _suite(conditions: dict, **settings) -> RobustnessParams:
    return parse_params(
        EvaluationParams, {"robustness": {"n_images": 30, "conditions": conditions, **settings}}, "evaluation"
    ).robustness


def test_the_default_conditions_cover_unseen_detectors_a_perfect_one_and_tolerances():
    suite = parse_params(EvaluationParams, {}, "evaluation").robustness
    assert suite.reference == "same_detector"
    assert list(suite.conditions)[:5] == [
        "same_detector",
        "unseen_detector_1",
        "unseen_detector_2",
        "unseen_detector_3",
        "perfect_detector",
    ]
    assert {
        "kv_x1.02",
        "al_filter_1.3mm",
        "scatter_x2",
        "scintillator_0.3mm",
        "blur_1.0px",
        "dose_x0.5",
    } <= set(suite.conditions)
    seeds = [suite.conditions[f"unseen_detector_{n}"].detector_seed for n in (1, 2, 3)]
    assert seeds == list(UNSEEN_DETECTOR_SEEDS)
    configs = robustness.condition_configs({"seed": 42}, suite)  # the default generation seed
    assert configs["same_detector"].detector_seed == 42
    assert configs["kv_x1.02"].kv == pytest.approx((40.8, 51.0, 81.6))
    assert configs["kv_x1.02"].reference_kv == 50.0  # the absorption label keeps its definition
    assert configs["scatter_x2"].scatter_fraction == pytest.approx(2 * SimulationConfig().scatter_fraction)
    assert configs["dose_x0.5"].dose == pytest.approx(SimulationConfig().dose / 2)
    assert configs["al_filter_1.3mm"].al_filter_mm == 1.3


def test_every_wrong_condition_is_named_with_its_field():
    with pytest.raises(ParameterError) as caught:
        _suite(
            {
                "typo": {"kvv": 1.0},
                "specimens": {"seed": 3, "n_images": 10},
                "both": {"dose": 100.0, "dose_scale": 0.5},
                "negative": {"scatter_fraction": -1.0},
                "bad name": {},
            }
        )
    problems = caught.value.problems
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "conditions.typo: 'kvv' is not a SimulationConfig field (did you mean kv?)" in text
    assert "conditions.specimens: 'seed' is a SimulationConfig field of the specimens" in text
    assert "'n_images'" in text
    assert "conditions.both: set either an absolute value or a scale, not both: dose_scale" in text
    assert "conditions.negative.scatter_fraction" in text
    assert "bad name" in text


def test_a_reference_that_is_no_condition_is_refused():
    with pytest.raises(ParameterError, match="reference 'nominal' is not one of the conditions"):
        _suite({"same_detector": {}}, reference="nominal")


def test_resolving_against_the_training_data_names_each_failing_condition():
    suite = _suite(
        {
            "same_detector": {},
            "training_unit": {"detector_seed": 7},  # GENERATION's detector
            "two_channels": {"kv": [40.0, 50.0]},
            "too_hot": {"kv_scale": 10.0},
        }
    )
    with pytest.raises(ValueError) as caught:
        robustness.condition_configs(GENERATION, suite)
    message = str(caught.value)
    assert "training_unit: detector_seed 7 is the training data's detector unit" in message
    assert "two_channels: kv has 2 channels, the training data 3" in message
    assert "too_hot: SimulationConfig.kv must be" in message


@pytest.fixture(scope="module")
def suite_images() -> robustness.ConditionImages:
    suite = _suite(
        {
            "same_detector": {},
            "unseen_detector_1": {"detector_seed": 910_001},
            "perfect_detector": {
                "fixed_pattern_gain_sigma": 0.0,
                "fixed_pattern_offset_sigma": 0.0,
                "dead_pixel_fraction": 0.0,
            },
            "kv_x1.02": {"kv_scale": 1.02},
            "scatter_x2": {"scatter_fraction_scale": 2.0},
        }
    )
    return robustness.simulate_conditions(GENERATION, suite)


def test_every_condition_images_the_same_specimens_and_only_the_images_differ(suite_images):
    names = list(suite_images)
    images, metadata = suite_images["same_detector"]
    assert len(metadata) >= 30 and metadata["specimen_id"].str.startswith("robust-").all()
    for name in names[1:]:
        other_images, other = suite_images[name]
        for column in ("image_id", "specimen_id", "alloy", "thickness_mm", "kv"):
            if column == "kv" and name == "kv_x1.02":
                continue
            pd.testing.assert_series_equal(metadata[column], other[column], check_names=False)
        assert other_images.shape == images.shape
        assert np.abs(other_images - images).mean() > 1e-5, name
    # a detector-only change leaves every label, absorption included, as it was
    pd.testing.assert_frame_equal(metadata, suite_images["unseen_detector_1"][1])


def test_the_suite_never_tells_a_model_its_instrument(suite_images):
    for name, (_, metadata) in suite_images.items():
        assert not [c for c in metadata.columns if c.startswith("instrument_")], name


def test_each_conditions_instrument_is_fitted_from_its_images_for_the_models():
    from alloy_mtl.pipelines.robustness.nodes import physics_limit_conditions

    generation = {**GENERATION, "tolerances": {"kv_scale": [0.98, 1.02]}}
    suite = _suite({"same_detector": {}, "kv_x1.02": {"kv_scale": 1.02}})
    conditions = robustness.simulate_conditions(generation, suite)
    predictions, instruments = physics_limit_conditions(conditions, generation)
    assert set(instruments) == {"same_detector", "kv_x1.02"}
    assert set(predictions["condition"]) == set(instruments)
    assert instruments["kv_x1.02"]["kv_scale"] > instruments["same_detector"]["kv_scale"]
    _, nominal = physics_limit_conditions(conditions, GENERATION)  # no declared tolerances: nominal
    assert {i["kv_scale"] for i in nominal.values()} == {1.0}


def test_a_detector_change_changes_the_fixed_pattern_and_a_perfect_detector_has_none():
    suite = _suite(
        {
            "same_detector": {},
            "unseen_detector_1": {"detector_seed": 910_001},
            "perfect_detector": {
                "fixed_pattern_gain_sigma": 0.0,
                "fixed_pattern_offset_sigma": 0.0,
                "dead_pixel_fraction": 0.0,
            },
        }
    )
    configs = robustness.condition_configs({**GENERATION, "dead_pixel_fraction": 0.05}, suite)
    plans = {name: plan_dataset(config) for name, config in configs.items()}
    training = plan_dataset(SimulationConfig.from_params({**GENERATION, "dead_pixel_fraction": 0.05}))
    same, unseen, perfect = plans["same_detector"], plans["unseen_detector_1"], plans["perfect_detector"]
    np.testing.assert_array_equal(same.fixed_gain, training.fixed_gain)  # the training data's unit
    np.testing.assert_array_equal(same.dead, training.dead)
    assert not np.allclose(unseen.fixed_gain, same.fixed_gain)
    assert not np.array_equal(unseen.dead, same.dead) and unseen.dead.sum() == same.dead.sum() > 0
    np.testing.assert_array_equal(perfect.fixed_gain, 1.0)
    np.testing.assert_array_equal(perfect.fixed_offset, 0.0)
    assert not perfect.dead.any()
    np.testing.assert_array_equal(unseen.drift, same.drift)  # the exposures' draws are the same


def _predictions(seed: int, strength: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 300
    y = np.arange(n) % len(ALLOYS)
    logits = rng.normal(size=(n, len(ALLOYS)))
    logits[np.arange(n), y] += strength
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = predictions_from_probs(probs, y)
    frame.insert(1, "specimen_id", [f"s{i // 3}" for i in range(n)])
    return frame


def test_the_table_has_a_row_per_model_and_condition_with_intervals_about_the_estimate():
    stacked = {
        model: robustness.stack_conditions(
            {"same_detector": _predictions(seed, 2.5), "unseen_detector_1": _predictions(seed + 10, 0.5)}
        )
        for seed, model in enumerate(["fnn", "resnet18"])
    }
    predictions = robustness.predictions_by_model(stacked, physics_limit=stacked["fnn"])
    assert list(predictions) == ["fnn", "resnet18", "ensemble_soft", "physics_limit"]
    table = robustness.robustness_table(predictions, "same_detector", n_resamples=200)
    assert list(table.columns) == list(robustness.TABLE_COLUMNS)
    assert len(table) == 8
    assert set(zip(table["model"], table["condition"], strict=True)) == {
        (m, c) for m in predictions for c in ("same_detector", "unseen_detector_1")
    }
    assert (table["macro_ap_ci_low"] <= table["macro_ap"]).all()
    assert (table["macro_ap"] <= table["macro_ap_ci_high"]).all()
    assert (table["accuracy_ci_low"] <= table["accuracy"]).all()
    assert (table["accuracy"] <= table["accuracy_ci_high"]).all()
    assert (table["n_specimens"] == 100).all()
    reference = table[table["condition"] == "same_detector"]
    assert (reference["macro_ap_change"] == 0).all()
    unseen = table[table["condition"] == "unseen_detector_1"]
    assert (unseen["macro_ap_change"] < -0.2).all()  # the weak tables score lower
    assert (unseen["mean_confidence"] < reference["mean_confidence"].to_numpy()).all()

    metrics = robustness.model_metrics(table)
    assert set(metrics) == set(predictions)
    assert metrics["fnn"]["unseen_detector_1"]["macro_ap"] == pytest.approx(
        unseen.set_index("model").loc["fnn", "macro_ap"]
    )
    conditions = _suite({"same_detector": {}, "unseen_detector_1": {"detector_seed": 910_001}}).conditions
    markdown = robustness.robustness_markdown(table, conditions, "same_detector", 0.95)
    assert "- `unseen_detector_1`: detector_seed = 910001" in markdown
    assert markdown.count("| ensemble_soft") == 4
    figure = robustness.robustness_figure(table)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["same_detector", "unseen_detector_1"]


def test_without_a_suite_the_report_says_so():
    table = robustness.robustness_table({}, "same_detector", n_resamples=10)
    assert table.empty and list(table.columns) == list(robustness.TABLE_COLUMNS)
    assert "No robustness suite" in robustness.robustness_markdown(table, {}, "same_detector", 0.95)
    assert robustness.robustness_figure(table).texts
    assert robustness.simulate_conditions(GENERATION, _suite({"a": {}}, reference="a", enabled=False)) == {}


def test_robustness_scores_go_to_each_model_run_and_the_report_to_the_parent():
    assert layout.route("fnn.robustness") == ("fnn", "robustness")
    assert layout.route("physics_limit.robustness") == ("physics_limit", "robustness")
    assert layout.route("fnn.robustness_predictions") is None  # large; stays on disk
    for name in ("robustness_table", "robustness_markdown", "robustness_figure"):
        assert layout.route(name) == (None, name)


def test_each_condition_has_a_kind_against_the_declared_tolerances():
    tolerances = SimulationConfig(
        tolerances={"kv_scale": [0.98, 1.02], "al_filter_mm": [0.7, 1.3]}
    ).tolerances
    suite = _suite(
        {
            "same_detector": {},
            "unseen": {"detector_seed": 5},
            "kv": {"kv_scale": 1.02},
            "kv_far": {"kv_scale": 1.05},
            "filter_and_unit": {"al_filter_mm": 0.8, "detector_seed": 6},
            "scatter": {"scatter_fraction_scale": 2.0},
            "perfect": {"dead_pixel_fraction": 0.0},
        }
    )
    kinds = {
        name: robustness.condition_kind(name, overrides, tolerances, suite.reference)
        for name, overrides in suite.conditions.items()
    }
    assert kinds == {
        "same_detector": "reference",
        "unseen": "unseen_detector",
        "kv": "in_tolerance",
        "kv_far": "out_of_tolerance",
        "filter_and_unit": "in_tolerance",
        "scatter": "out_of_tolerance",  # a tolerance setting, but none declared for it
        "perfect": "other",
    }


def test_the_summary_is_the_worst_and_mean_over_unseen_detectors_and_in_tolerance_conditions():
    table = pd.DataFrame(
        {
            "model": ["a"] * 4 + ["b"] * 4,
            robustness.CONDITION: ["ref", "unseen", "kv", "perfect"] * 2,
            "macro_ap": [0.99, 0.80, 0.90, 0.10, 0.95, 0.93, 0.91, 0.20],
        }
    )
    kinds = {"ref": "reference", "unseen": "unseen_detector", "kv": "in_tolerance", "perfect": "other"}
    summary = robustness.summary_scores(table, kinds)
    assert summary["a"] == pytest.approx({"worst_macro_ap": 0.80, "mean_macro_ap": 0.85, "n_conditions": 2})
    assert summary["b"]["worst_macro_ap"] == pytest.approx(0.91)

    ceiling = pd.DataFrame(
        {"model": ["physics_limit"] * 4, robustness.CONDITION: ["ref", "unseen", "kv", "perfect"]}
    )
    with_ceiling = pd.concat([table, ceiling.assign(macro_ap=[0.99, 0.99, 0.93, 0.99])], ignore_index=True)
    summary = robustness.summary_scores(with_ceiling, kinds)
    assert summary["a"]["worst_gap_to_ceiling"] == pytest.approx(0.19)  # unseen: 0.99 - 0.80
    assert summary["b"]["worst_gap_to_ceiling"] == pytest.approx(0.06)  # unseen: 0.99 - 0.93
    assert "worst_gap_to_ceiling" not in summary["physics_limit"]


def test_summary_is_a_reserved_condition_name():
    with pytest.raises(ParameterError, match="'summary' is reserved"):
        _suite({"same_detector": {}, "summary": {"detector_seed": 3}})
