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
    external_markdown,
    external_table,
    instrument_at_bounds,
)
from alloy_mtl.evaluation.params import EvaluationParams
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
