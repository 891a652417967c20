"""Nodes of the unknown_materials pipeline: thin wrappers over :mod:`alloy_mtl.evaluation.physics_unknown` and
:mod:`alloy_mtl.evaluation.physics_unknown_evaluation`."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from alloy_mtl.config import parse_params
from alloy_mtl.evaluation.ood import OOD_RESAMPLES
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.physics_unknown import (
    PhysicsUnknownScore,
    UnknownMaterialsParams,
    fit_physics_unknown,
)
from alloy_mtl.evaluation.physics_unknown_evaluation import (
    PHYSICS_COLUMNS,
    physics_ood_report,
    score_evaluation_sets,
)
from alloy_mtl.mtl.models.ood import DEFAULT_REJECT_RATE

logger = logging.getLogger(__name__)

DISABLED = "not fitted: unknown_materials.enabled is false"


def fit_unknown_materials(
    generation: dict[str, Any] | None, unknown_materials: dict[str, Any] | None
) -> tuple[PhysicsUnknownScore | str, dict[str, Any]]:
    """Fit the physics unknown-designation score for the instrument ``generation`` describes (the lab's once
    ``calibrate_instrument`` has fitted it). Returns the score (or, where disabled, the reason it is not
    fitted: inference then reports it) and its summary."""
    params = parse_params(UnknownMaterialsParams, unknown_materials, "unknown_materials")
    if not params.enabled:
        logger.info("physics unknown score %s", DISABLED)
        return DISABLED, {"fitted": False, "reason": DISABLED}
    score = fit_physics_unknown(generation, params)
    return score, {"fitted": True, **score.summary()}


def evaluate_unknown_materials(
    score: PhysicsUnknownScore | str | None,
    generation: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The physics score on the evaluation's generated sets (the unknown-material set mixed into the evaluation
    set, scored as inference scores a folder) at the models' default rejection rate: the per-image table the
    comparison combines with each model's answers, and the score's report per family. The sets are simulated
    whatever the data source (the score is fitted on simulation; a model trained on lab data predicts no
    generated set, so it gets no combined answers). Empty, with the reason, where the score is not fitted or a
    set is off."""
    settings = parse_params(EvaluationParams, evaluation, "evaluation")
    reason = None
    if not isinstance(score, PhysicsUnknownScore):
        reason = score if isinstance(score, str) else "not fitted: run the unknown_materials pipeline"
    elif not settings.ood.enabled or settings.ood.images_per_material == 0:
        reason = "not evaluated: evaluation.ood is off"
    elif not settings.evaluation_set.enabled or settings.evaluation_set.n_images == 0:
        reason = "not evaluated: evaluation.evaluation_set is off"
    if reason is not None:
        logger.info("physics unknown score %s", reason)
        empty = pd.DataFrame(columns=[*PHYSICS_COLUMNS, "physics_unknown_threshold"])
        return empty, {"evaluated": False, "reason": reason}
    table = score_evaluation_sets(
        score, generation, settings, DEFAULT_REJECT_RATE, seed=settings.bootstrap.seed
    )
    report = physics_ood_report(
        table, n_resamples=min(settings.bootstrap.n_resamples, OOD_RESAMPLES), seed=settings.bootstrap.seed
    )
    logger.info(
        "physics unknown score on the evaluation's sets: known withheld %.1f %%, near-OOD AUROC %.3f",
        100 * report.get("known_rejected", float("nan")),
        report.get("families", {}).get("near", {}).get("auroc", float("nan")),
    )
    return table, {"evaluated": True, "reject_rate": DEFAULT_REJECT_RATE, **report}
