"""Ensemble weights chosen on validation predictions, applied unchanged to other image sets."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation import robustness
from alloy_mtl.evaluation.classification import classification_metrics
from alloy_mtl.evaluation.ensemble import ensemble_predictions
from alloy_mtl.evaluation.ensemble_selection import select_ensemble, selected_weights
from tests.evaluation.helpers import predictions_from_probs

# A strong model and weak ones (strength = how far the true class's logit is lifted above the noise).
STRENGTHS = {"noise_a": 0.0, "good": 4.0, "weak": 1.0, "noise_b": 0.0}


def _models(split_seed: int, n: int = 400) -> dict[str, pd.DataFrame]:
    """Every model's predictions of one image set: the split's labels, each model's own noise."""
    y = np.random.default_rng(split_seed).choice(len(ALLOYS), size=n, p=[0.4, 0.25, 0.15, 0.12, 0.08])
    models = {}
    for offset, (name, strength) in enumerate(STRENGTHS.items()):
        logits = np.random.default_rng(split_seed * 100 + offset).normal(size=(n, len(ALLOYS)))
        logits[np.arange(n), y] += strength
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        models[name] = predictions_from_probs(probs, y)
    return models


def _macro_ap(frame: pd.DataFrame) -> float:
    return classification_metrics(frame)["macro_ap"]


@pytest.mark.parametrize("method", ["greedy", "loglik"])
def test_a_strong_member_gets_the_weight_and_the_test_ensemble_is_at_least_as_good(method: str) -> None:
    selection = select_ensemble(_models(1), {"method": method, "rounds": 15})
    weights = selection["weights"]

    assert list(weights) == list(STRENGTHS)
    assert all(w >= 0 for w in weights.values()) and sum(weights.values()) == pytest.approx(1.0)
    assert weights["good"] >= 0.8
    assert selection["members"] == [name for name, w in weights.items() if w > 0]
    scores = selection["validation"]["macro_ap"]
    assert scores["ensemble_selected"] >= max(scores[name] for name in STRENGTHS)
    assert scores["ensemble_soft"] < scores["good"]  # the equal-weight mean is dragged down

    test = _models(2)
    applied = ensemble_predictions(test, "soft", weights=selected_weights(selection, list(test)))
    assert _macro_ap(applied) >= max(_macro_ap(frame) for frame in test.values())
    assert _macro_ap(ensemble_predictions(test, "soft")) < _macro_ap(test["good"])


def test_greedy_selection_records_its_path_and_is_deterministic() -> None:
    first = select_ensemble(_models(1), {"method": "greedy", "rounds": 10})
    again = select_ensemble(_models(1), {"method": "greedy", "rounds": 10})

    assert first == again
    assert first["method"] == "greedy" and first["split"] == "val" and first["n_images"] == 400
    assert len(first["path"]) == 10 and first["path"][0] == "good"  # started from the best single model
    # the weights are the draw counts of the best-scoring prefix of the path over its length
    length = next(
        k for k in range(1, 11) if all(abs(w * k - round(w * k)) < 1e-9 for w in first["weights"].values())
    )
    assert first["weights"] == {name: first["path"][:length].count(name) / length for name in STRENGTHS}


def test_equal_method_is_the_plain_soft_ensemble_and_twins_go_to_the_first() -> None:
    models = _models(1)
    equal = select_ensemble(models, {"method": "equal"})
    assert equal["weights"] == {name: 0.25 for name in STRENGTHS}

    twins = {"first": models["good"], "second": models["good"].copy(), "noise": models["noise_a"]}
    chosen = select_ensemble(twins, {"method": "greedy", "rounds": 5})
    assert chosen["weights"] == {
        "first": 1.0,
        "second": 0.0,
        "noise": 0.0,
    }  # a tie keeps the smaller ensemble
    assert chosen["members"] == ["first"]


def test_missing_or_mismatched_validation_predictions_name_the_model() -> None:
    models = _models(1)
    with pytest.raises(ValueError, match=r"no validation \(val split\) predictions of model\(s\) \['weak'\]"):
        select_ensemble({**models, "weak": pd.DataFrame(columns=["image_id"])})
    with pytest.raises(ValueError, match=r"\['good'\]"):
        select_ensemble({**models, "good": None})
    with pytest.raises(ValueError, match="model 'noise_b' predicted a different set of images"):
        select_ensemble({**models, "noise_b": models["noise_b"].iloc[1:]})
    with pytest.raises(ValueError, match="evaluation.ensemble_selection.method"):
        select_ensemble(models, {"method": "stacking"})


def test_weights_chosen_over_other_models_are_refused_by_name() -> None:
    selection = select_ensemble(_models(1), {"method": "greedy", "rounds": 3})
    with pytest.raises(ValueError, match=r"no weight: \['resnet18'\]; no predictions: \['noise_b'\]"):
        selected_weights(selection, ["noise_a", "good", "weak", "resnet18"])
    with pytest.raises(ValueError, match="has no 'weights'"):
        selected_weights({}, ["good"])


def test_weighted_voting_by_hand_and_its_errors() -> None:
    ids = ["a", "b"]
    a = predictions_from_probs(np.array([[0.7, 0.3, 0, 0, 0], [0.1, 0.9, 0, 0, 0]]), np.array([0, 1]), ids)
    b = predictions_from_probs(np.array([[0.2, 0.8, 0, 0, 0], [0.7, 0.3, 0, 0, 0]]), np.array([0, 1]), ids)
    soft = ensemble_predictions({"a": a, "b": b}, "soft", weights={"a": 3, "b": 1})
    np.testing.assert_allclose(soft["prob_1050"], [0.75 * 0.7 + 0.25 * 0.2, 0.75 * 0.1 + 0.25 * 0.7])
    assert soft["alloy_pred"].tolist() == ["1050", "2017"]  # equal weights: 2017, 2017
    assert ensemble_predictions({"a": a, "b": b}, "soft")["alloy_pred"].tolist() == ["2017", "2017"]
    hard = ensemble_predictions({"a": a, "b": b}, "hard", weights={"b": 1.0})  # a weighs 0: b's votes
    assert hard["alloy_pred"].tolist() == ["2017", "1050"]
    with pytest.raises(ValueError, match=r"no predictions of model\(s\) \['c'\]"):
        ensemble_predictions({"a": a, "b": b}, weights={"a": 1, "c": 1})
    with pytest.raises(ValueError, match="non-negative.*'b': -1"):
        ensemble_predictions({"a": a, "b": b}, weights={"a": 1, "b": -1})
    with pytest.raises(ValueError, match="every weight is 0"):
        ensemble_predictions({"a": a, "b": b}, weights={"a": 0})


def test_the_robustness_suite_applies_the_chosen_weights_in_every_condition() -> None:
    selection = select_ensemble(_models(1), {"method": "greedy", "rounds": 5})
    conditions = {name: _models(seed) for seed, name in enumerate(["same_detector", "unseen_detector_1"], 3)}
    stacked = {
        model: robustness.stack_conditions(
            {condition: frames[model].assign(specimen_id="s") for condition, frames in conditions.items()}
        )
        for model in STRENGTHS
    }
    rows = robustness.predictions_by_model(stacked, selection=selection)

    assert list(rows) == [*STRENGTHS, "ensemble_soft", "ensemble_selected"]
    by_condition = robustness.by_condition(rows["ensemble_selected"])
    for condition, frames in conditions.items():
        expected = ensemble_predictions(frames, "soft", weights=selection["weights"])
        np.testing.assert_allclose(
            by_condition[condition].filter(like="prob_").to_numpy(float),
            expected.filter(like="prob_").to_numpy(),
        )


def test_the_evaluation_nodes_choose_on_validation_apply_to_test_and_note_the_choice() -> None:
    from alloy_mtl.pipelines.evaluation.nodes import choose_ensemble, compare_architectures, selected_ensemble

    evaluation = {"ensemble_selection": {"method": "greedy", "rounds": 5}, "bootstrap": {"n_resamples": 0}}
    selection = choose_ensemble(evaluation, **_models(1))
    test = _models(2)
    selected = selected_ensemble(evaluation, selection, **test)
    expected = ensemble_predictions(test, "soft", weights=selection["weights"])
    pd.testing.assert_frame_equal(selected, expected)
    with pytest.raises(ValueError, match=r"no weight: \['extra'\]"):
        selected_ensemble(evaluation, selection, **test, extra=test["good"])

    metrics = {name: {"classification": classification_metrics(frame)} for name, frame in test.items()}
    ensembles = {"soft_metrics": metrics["weak"], "hard_metrics": metrics["weak"]}
    table, markdown, _ = compare_architectures(
        {},
        evaluation=evaluation,
        selected_metrics={"classification": classification_metrics(selected)},
        selection=selection,
        **ensembles,
        **metrics,
    )
    assert table["model"].tolist() == [*STRENGTHS, "ensemble_soft", "ensemble_hard", "ensemble_selected"]
    assert (
        "`ensemble_selected` weighs the models as chosen on the validation split (400 images; greedy"
        in markdown
    )
    assert re.search(r"greedy forward selection .*\(5 rounds\)\): good 0\.\d\d.*, best member good", markdown)


def test_the_selection_records_which_validation_set_it_was_chosen_on() -> None:
    models = {name: frame.assign(selection_set="generated_validation") for name, frame in _models(5).items()}
    assert select_ensemble(models, {"method": "equal"})["split"] == "generated_validation"
    assert select_ensemble(_models(5), {"method": "equal"})["split"] == "val"
    mixed = {**models, "good": _models(5)["good"].assign(selection_set="val")}
    with pytest.raises(ValueError, match="different validation sets"):
        select_ensemble(mixed, {"method": "equal"})


def test_the_generated_validation_set_is_balanced_fresh_and_imaged_by_validation_units() -> None:
    from alloy_mtl.evaluation.evaluation_set import evaluation_set_config, validation_set_config
    from alloy_mtl.evaluation.params import (
        UNSEEN_DETECTOR_SEEDS,
        VALIDATION_DETECTOR_SEEDS,
        EnsembleSelectionParams,
        EvaluationSetParams,
    )
    from alloy_mtl.physics.simulator import plan_dataset

    generation = {
        "seed": 7,
        "n_images": 300,
        "image_size": 8,
        "instruments": 4,
        "tolerances": {"kv_scale": [0.98, 1.02], "dose_scale": [0.5, 2.0]},
        "randomise": [],
    }
    params = EnsembleSelectionParams(n_images=150, units=3)
    config = validation_set_config(generation, params)
    assert config.detector_seed == VALIDATION_DETECTOR_SEEDS[0] not in UNSEEN_DETECTOR_SEEDS
    assert config.seed != evaluation_set_config(generation, EvaluationSetParams()).seed != 7
    assert (config.instruments, config.imbalance_ratio, config.n_images) == (3, 1.0, 150)
    units = plan_dataset(config).units
    assert all(
        set(unit.settings) == {"kv_scale", "dose_scale"} for unit in units
    )  # drawn despite randomise: []
    assert len({unit.settings["kv_scale"] for unit in units}) == 3


def test_predict_validation_uses_the_generated_set_or_the_split(monkeypatch) -> None:
    from types import SimpleNamespace

    from alloy_mtl.pipelines.evaluation import nodes

    calls = []

    def fake_predict(model, images, metadata):
        calls.append(len(metadata))
        return pd.DataFrame({"image_id": metadata["image_id"].to_numpy()})

    monkeypatch.setattr(nodes, "predict_images", fake_predict)
    metadata = pd.DataFrame({"image_id": ["a", "b", "c"], "split": ["train", "val", "val"]})
    model_input = SimpleNamespace(metadata=metadata, images=np.zeros((3, 1, 8, 8), dtype=np.float32))
    generation = {"seed": 3, "n_images": 100, "image_size": 8}
    evaluation = {"ensemble_selection": {"n_images": 60, "units": 2}}
    generated = nodes.predict_validation({}, model_input, {}, generation, evaluation)
    assert set(generated["selection_set"]) == {"generated_validation"} and calls == [60]
    split = nodes.predict_validation({}, model_input, {}, generation, {"ensemble_selection": {"n_images": 0}})
    assert set(split["selection_set"]) == {"val"} and list(split["image_id"]) == ["b", "c"]
    lab = {"kind": "csv_folder", "path": "/lab"}
    from_lab = nodes.predict_validation(
        {}, model_input, lab, generation, evaluation
    )  # no generator: the split
    assert set(from_lab["selection_set"]) == {"val"} and calls == [60, 2, 2]
