"""Nodes of evaluate_external: thin wrappers over :mod:`alloy_mtl.evaluation.external`."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from alloy_mtl.config import parse_params
from alloy_mtl.data.ingest import ingest_dataset
from alloy_mtl.evaluation import robustness
from alloy_mtl.evaluation.external import (
    EXTERNAL,
    ExternalParams,
    external_conformal_markdown,
    external_markdown,
    external_table,
    instrument_at_bounds,
)
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.unit_conformal import UnitConformalParams, model_sets, refit_record, served_columns
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.physics.simulator import SimulationConfig
from alloy_mtl.pipelines.robustness.nodes import physics_limit_conditions, predict_conditions

logger = logging.getLogger(__name__)


def read_external_folder(external: dict[str, Any]) -> robustness.ConditionImages:
    """The labelled folder ``external.path`` as the one condition ``external``, every bad file named at once.

    Raises:
        ValueError: ``external.path`` is not set.
        DataValidationError: bad files or rows (all listed).
    """
    params = parse_params(ExternalParams, external, "external")
    if not params.path:
        raise ValueError(
            "external.path: required; give the lab's labelled folder, e.g. "
            "`kedro run --pipeline evaluate_external --params external.path=/lab/test`"
        )
    data = ingest_dataset(params.path, params.layout, params.options)
    logger.info("external folder %s: %d labelled images", params.path, len(data))
    return {EXTERNAL: (data.images, data.metadata)}


def physics_limit_external(
    images: robustness.ConditionImages, generation: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """The physics limit on the folder, its instrument fitted inside ``generation``'s tolerances about its
    nominal (the calibrated instrument with ``generation.instrument: calibrated``): the row a lab compares
    models with, and the instrument instrument-conditioned models are told. A folder the estimator cannot read
    (other channels or image size than ``generation``) has no physics row."""
    try:
        return physics_limit_conditions(images, generation)
    except ValueError as err:
        logger.warning("no physics-limit row: %s", err)
        return robustness.stack_conditions({}), {}


def predict_external(
    model: dict[str, Any], images: robustness.ConditionImages, instruments: dict[str, dict[str, float]]
) -> pd.DataFrame:
    """A trained model's predictions of the folder; an architecture that was not trained (``{}``) has none."""
    if not model:
        return robustness.stack_conditions({})
    return predict_conditions(model, images, instruments)


def report_external(
    external: dict[str, Any],
    evaluation: dict[str, Any],
    generation: dict[str, Any],
    *,
    physics_limit: pd.DataFrame,
    instruments: dict[str, dict[str, float]],
    ensemble_selection: dict[str, Any] | None = None,
    **architectures: pd.DataFrame,
) -> tuple[pd.DataFrame, str]:
    """The comparison table (one row per model, ensemble and the physics limit) and its Markdown, which warns
    when the folder's fitted instrument sits on an edge of ``generation``'s declared tolerances."""
    params = parse_params(ExternalParams, external, "external")
    bootstrap = parse_params(EvaluationParams, evaluation, "evaluation").bootstrap
    trained = {arch: frame for arch, frame in architectures.items() if not frame.empty}
    if not trained:
        logger.warning(
            "no trained model under data/06_models/<arch>/model.pt: only the physics limit is scored"
        )
    weights = (ensemble_selection or {}).get("weights") or {}
    if ensemble_selection is not None and set(weights) != set(trained):
        logger.warning(
            "no ensemble_selected row: its weights were chosen over %s, the trained models are %s",
            sorted(weights),
            sorted(trained),
        )
        ensemble_selection = None
    predictions = robustness.predictions_by_model(trained, physics_limit, ensemble_selection)
    table = external_table(
        predictions, n_resamples=params.n_resamples, seed=bootstrap.seed, level=bootstrap.level
    )
    instrument = instruments.get(EXTERNAL, {})
    at_bounds = instrument_at_bounds(instrument, SimulationConfig.from_params(generation).tolerances)
    if at_bounds:
        logger.warning("the external folder's instrument is at the edge of the tolerances: %s", at_bounds)
    markdown = external_markdown(table, str(params.path), instrument, bootstrap.level, at_bounds)
    return table, markdown


def check_external_conformal(
    model: dict[str, Any],
    predictions: pd.DataFrame,
    external: dict[str, Any],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """A trained model's conformal sets on the folder, its own and refitted there (cross-fitted over
    ``external.conformal_folds`` specimen folds, seeded by ``evaluation.bootstrap.seed``): a
    :func:`alloy_mtl.evaluation.unit_conformal.refit_record`, empty for a model not trained, without fitted sets,
    or a folder without enough labelled images of an alloy (logged)."""
    if not model or predictions.empty:
        return {}
    params = parse_params(ExternalParams, external, "external")
    seed = parse_params(EvaluationParams, evaluation, "evaluation").bootstrap.seed
    sets = load_model(model).conformal
    if not sets.fitted:
        return {}
    tasks = parse_tasks(model["tasks"])
    classes = list(next(t for t in tasks if t.is_classification).classes)
    own = model_sets(sets, classes, {t.name: t.target for t in tasks if not t.is_classification})
    answers = served_columns(predictions, own, {t.target: t.target for t in tasks if not t.is_classification})
    check = UnitConformalParams(coverage=own.coverage, folds=params.conformal_folds, seed=seed)
    try:
        return refit_record(
            answers,
            classes,
            predictions["specimen_id"].astype(str).tolist(),
            check,
            fitted_on=str(params.path),
            model_uri=str(model["arch"]),
        )
    except ValueError as error:
        logger.warning("no conformal check of %s on the external folder: %s", model["arch"], error)
        return {}


def report_external_conformal(external: dict[str, Any], **records: dict[str, Any]) -> str:
    """Every model's conformal check on the folder as Markdown (``external/conformal.md``)."""
    params = parse_params(ExternalParams, external, "external")
    return external_conformal_markdown(records, str(params.path))
