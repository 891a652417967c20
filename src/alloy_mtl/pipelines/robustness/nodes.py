"""Nodes of the robustness pipeline: thin wrappers over ``alloy_mtl.evaluation.robustness``."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from alloy_mtl.config import parse_params
from alloy_mtl.data.params import DataSourceParams
from alloy_mtl.evaluation import robustness
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.mtl.labelled_prediction import predict_images
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument_fit import nominal_instrument
from alloy_mtl.physics.simulator import SimulationConfig

logger = logging.getLogger(__name__)

PHYSICS_ROW = "physics_limit"
ENSEMBLE_ROW = "ensemble_soft"
SELECTED_ROW = "ensemble_selected"


def simulate_conditions(
    data_source: dict[str, Any], generation: dict[str, Any], evaluation: dict[str, Any]
) -> robustness.ConditionImages:
    """The suite's images and metadata per condition (empty for lab data or when the suite is off)."""
    source = parse_params(DataSourceParams, data_source, "data_source")
    if source.kind != "generated":
        logger.info("robustness suite skipped: data source is %s", source.kind)
        return {}
    settings = parse_params(EvaluationParams, evaluation, "evaluation").robustness
    return robustness.simulate_conditions(generation, settings)


def predict_conditions(
    model: dict[str, Any],
    conditions: robustness.ConditionImages,
    instruments: dict[str, dict[str, float]] | None = None,
) -> pd.DataFrame:
    """A trained model's predictions of every condition, stacked with a ``condition`` column; an
    instrument-conditioned model is told each condition's fitted instrument (``instruments``)."""
    instruments = instruments or {}
    return robustness.stack_conditions(
        {
            name: predict_images(model, images, metadata, instrument=instruments.get(name))
            for name, (images, metadata) in conditions.items()
        }
    )


def physics_limit_conditions(
    conditions: robustness.ConditionImages, generation: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """The physics-limit estimator on every condition: told the nominal instrument and the declared
    ``generation.tolerances``, it fits each condition's instrument inside them (never its labels); without
    declared tolerances it is told the nominal instrument alone. Returns the predictions and each condition's
    instrument (fitted, else nominal): what an instrument-conditioned model is told."""
    if not conditions:
        return robustness.stack_conditions({}), {}
    config = SimulationConfig.from_params(generation)
    predictions, instruments = {}, {}
    for name, (images, metadata) in conditions.items():
        estimator = PhysicsLimitEstimator.within_declared(config)
        predictions[name] = robustness.physics_predictions(estimator, images, metadata)
        instruments[name] = estimator.fitted_instrument or nominal_instrument(config)
        logger.info("physics limit, %s: instrument %s", name, instruments[name])
    return robustness.stack_conditions(predictions), instruments


def report_robustness(
    evaluation: dict[str, Any],
    generation: dict[str, Any],
    physics_limit: pd.DataFrame,
    ensemble_selection: dict[str, Any] | None = None,
    **architectures: pd.DataFrame,
) -> dict[str, Any]:
    """The tidy table, the Markdown report, the macro-AP heatmap and each model's ``robustness`` metrics.

    ``ensemble_selection``: the weights the evaluation pipeline chose on the validation split, applied to
    every condition as the ``ensemble_selected`` row. Returns a mapping with ``table``, ``markdown``,
    ``figure`` and one ``<model>`` entry per architecture, ``ensemble_soft``, ``ensemble_selected`` and
    ``physics_limit`` (``{condition: {metric: value}, "summary": {...}}``: the worst and mean macro AP over
    unseen detectors and in-tolerance conditions; empty without a suite).
    """
    settings = parse_params(EvaluationParams, evaluation, "evaluation")
    suite = settings.robustness
    predictions = robustness.predictions_by_model(architectures, physics_limit, ensemble_selection)
    table = robustness.robustness_table(
        predictions,
        suite.reference,
        n_resamples=suite.n_resamples,
        seed=settings.bootstrap.seed,
        level=settings.bootstrap.level,
    )
    per_model = robustness.model_metrics(table)
    kinds = robustness.condition_kinds(generation, suite)
    for model, scores in robustness.summary_scores(table, kinds).items():
        per_model.setdefault(model, {})[robustness.SUMMARY] = scores
    markdown = robustness.robustness_markdown(
        table, suite.conditions, suite.reference, settings.bootstrap.level, kinds
    )
    figure: Figure = robustness.robustness_figure(table)
    models = [*architectures, ENSEMBLE_ROW, SELECTED_ROW, PHYSICS_ROW]
    return {"table": table, "markdown": markdown, "figure": figure} | {
        m: per_model.get(m, {}) for m in models
    }
