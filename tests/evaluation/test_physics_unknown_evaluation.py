"""The physics unknown score on the evaluation's sets, its report, and what a model answers with it beside."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.evaluation.ood import ood_markdown
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.physics_unknown import UnknownMaterialsParams, fit_physics_unknown
from alloy_mtl.evaluation.physics_unknown_evaluation import (
    physics_ood_report,
    score_evaluation_sets,
    with_physics,
)
from alloy_mtl.pipelines.evaluation.nodes import answer_with_physics
from alloy_mtl.pipelines.unknown_materials.nodes import evaluate_unknown_materials
from tests.evaluation.helpers import PHYSICS_GENERATION, PHYSICS_TINY

GENERATION, TINY = PHYSICS_GENERATION, PHYSICS_TINY
EVALUATION = {
    "evaluation_set": {"n_images": 200},
    "ood": {"images_per_material": 12},
    "bootstrap": {"n_resamples": 20},
}


@pytest.fixture(scope="module")
def fitted():
    return fit_physics_unknown(GENERATION, UnknownMaterialsParams(**TINY))


@pytest.fixture(scope="module")
def table(fitted):
    return score_evaluation_sets(fitted, GENERATION, EvaluationParams(**EVALUATION), 0.01)


def test_every_image_of_both_sets_is_scored_once_with_the_ids_the_models_predictions_carry(table):
    known, unknown = table[table["set"] == "evaluation_set"], table[table["set"] == "ood"]
    assert len(known) == 200 and set(known["family"]) == {"known"}
    assert {"near", "far", "open_beam", "blank", "dark"} <= set(unknown["family"])
    assert table["image_id"].is_unique and unknown["image_id"].str.startswith("ood-").all()
    assert np.isfinite(known["physics_unknown_score"]).all()
    nothing_like_a_plate = unknown[unknown["family"].isin(["far", "open_beam", "blank", "dark"])]
    assert (
        nothing_like_a_plate["physics_unknown_score"] > nothing_like_a_plate["physics_unknown_threshold"]
    ).all()
    assert table["physics_unknown_threshold"].nunique() == 1


def test_same_seed_same_scores_and_a_score_for_another_beam_is_refused_by_name(fitted, table):
    again = score_evaluation_sets(fitted, GENERATION, EvaluationParams(**EVALUATION), 0.01)
    pd.testing.assert_frame_equal(table, again)
    with pytest.raises(
        ValueError, match=r"fitted for \(40.0, 50.0, 80.0\) kV.*kedro run --pipeline unknown_materials"
    ):
        score_evaluation_sets(fitted, {**GENERATION, "kv": [40, 80]}, EvaluationParams(**EVALUATION), 0.01)


def test_the_report_has_a_row_per_family_and_far_materials_are_caught(table):
    report = physics_ood_report(table, n_resamples=20)
    assert {"near", "far", "open_beam"} <= set(report["families"])
    assert report["families"]["open_beam"]["auroc"] == 1.0
    assert 0.0 <= report["known_rejected"] <= 0.1
    assert physics_ood_report(table.iloc[:0]) == {}


def _model_answers(table: pd.DataFrame, flagged: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = table[["image_id", "specimen_id", "family", "set"]].assign(
        ood_score=[5.0 if i in flagged else 0.0 for i in table["image_id"]], ood_threshold=1.0
    )
    # the evaluation set's predictions carry no threshold: the model's served one is the OOD set's
    known = frame[frame["set"] == "evaluation_set"].drop(columns="ood_threshold")
    return known, frame[frame["set"] == "ood"]


def test_a_model_with_the_physics_score_answers_unknown_where_either_says_so():
    table = pd.DataFrame(
        {
            "image_id": ["k1", "k2", "k3", "k4", "n1", "n2", "n3", "n4"],
            "specimen_id": list("abcdefgh"),
            "set": ["evaluation_set"] * 4 + ["ood"] * 4,
            "family": ["known"] * 4 + ["near"] * 4,
            "physics_unknown_score": [0.0, 9.0, 0.0, 0.0, 9.0, 9.0, 0.0, 0.0],
            "physics_unknown_threshold": 1.0,
        }
    )
    known, unknown = _model_answers(table, {"k1", "n3"})
    combined = with_physics(known, unknown, table)
    assert combined["known_rejected"] == 0.5 and combined["physics_known_rejected"] == 0.25
    assert combined["families"]["near"]["unknown_rejected"] == 0.75
    # another evaluation set (ids the physics table does not have), no table, a model without a score
    assert with_physics(known.assign(image_id="other"), unknown, table) == {}
    assert with_physics(known, unknown, table.iloc[:0]) == {}
    assert with_physics(known.assign(ood_score=np.nan), unknown, table) == {}


def test_the_comparison_section_shows_the_physics_row_and_each_models_answers_with_it(table):
    report = physics_ood_report(table, n_resamples=20)
    known, unknown = _model_answers(table, set())
    model = {"known_rejected": 0.0, "families": report["families"]}
    answers = answer_with_physics(
        table, resnet18_evaluation_set_predictions=known, resnet18_ood_predictions=unknown
    )
    assert answers["resnet18"] == with_physics(known, unknown, table)
    text = "\n".join(ood_markdown({"resnet18": model}, report, answers))
    assert "| physics unknown score |" in text and "| resnet18 + physics |" in text
    assert "physics" not in "\n".join(ood_markdown({"resnet18": model}))
    no_table = answer_with_physics(
        None, resnet18_evaluation_set_predictions=known, resnet18_ood_predictions=unknown
    )
    assert no_table == {}


@pytest.mark.parametrize(
    ("score", "evaluation", "reason"),
    [
        (None, EVALUATION, "not fitted"),
        ("not fitted: unknown_materials.enabled is false", EVALUATION, "enabled is false"),
        ("fitted", {**EVALUATION, "ood": {"enabled": False}}, "evaluation.ood is off"),
        ("fitted", {**EVALUATION, "evaluation_set": {"n_images": 0}}, "evaluation_set is off"),
    ],
)
def test_the_node_says_why_it_did_not_evaluate(fitted, score, evaluation, reason):
    table, report = evaluate_unknown_materials(fitted if score == "fitted" else score, GENERATION, evaluation)
    assert table.empty and report["evaluated"] is False and reason in report["reason"]


def test_the_node_evaluates_a_fitted_score(fitted):
    table, report = evaluate_unknown_materials(fitted, GENERATION, EVALUATION)
    assert report["evaluated"] is True and report["reject_rate"] == 0.01
    assert len(table) > 200 and "near" in report["families"]


def test_images_the_input_guards_refuse_are_not_scored_but_count_as_unknown(fitted, monkeypatch):
    import alloy_mtl.mtl.loading.input_guards as module

    monkeypatch.setattr(
        module, "radiograph_problems", lambda image, one_image: ["dark"] if image.mean() < 0.01 else []
    )
    table = score_evaluation_sets(fitted, GENERATION, EvaluationParams(**EVALUATION), 0.01)
    dark = table["family"] == "dark"
    assert np.isinf(table.loc[dark, "physics_unknown_score"]).all()
    assert np.isfinite(table.loc[table["family"] == "known", "physics_unknown_score"]).all()
