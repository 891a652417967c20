"""Nodes of the evaluation pipelines: thin wrappers over ``alloy_mtl.evaluation`` and the physics estimator."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from alloy_mtl.config import parse_params
from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.params import DataSourceParams
from alloy_mtl.data.store import XrayData
from alloy_mtl.evaluation.comparison import (
    ap_by_alloy_table,
    comparison_table,
    to_markdown,
    training_summary_table,
)
from alloy_mtl.evaluation.ensemble import ensemble_predictions
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.plots import ap_heatmap
from alloy_mtl.evaluation.report import evaluate_model
from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.mtl.tasks import TaskSpec, parse_tasks
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.simulator import SimulationConfig

logger = logging.getLogger(__name__)

PHYSICS_ROW = "physics_limit"
#: The tasks of the physics estimator and the ensembles' common contract (the default task set).
REFERENCE_TASKS = parse_tasks(
    {
        "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5},
        "thickness": {"kind": "regression", "target": "thickness_mm"},
        "absorption": {"kind": "regression", "target": "absorption"},
    }
)


def _train_labels(model_input: XrayData, tasks: list[TaskSpec]) -> dict[str, np.ndarray]:
    """The train split's labels by target column, as each task's spec reads them."""
    train = model_input.metadata[model_input.metadata["split"] == "train"]
    return {task.target: task.truth(train[task.target]) for task in tasks if task.target in train.columns}


def _evaluation_settings(evaluation: dict[str, Any], tasks: list[TaskSpec]) -> dict[str, Any]:
    settings = parse_params(EvaluationParams, evaluation, "evaluation").model_dump()
    classes = next((t.classes for t in tasks if t.is_classification), ALLOYS)
    specs = {t.name: {"kind": t.kind, "target": t.target} for t in tasks}
    return {**settings, "alloys": list(classes), "tasks": specs}


def _png_names(figures: dict[str, Figure]) -> dict[str, Figure]:
    return {f"{name}.png": figure for name, figure in figures.items()}


def evaluate_architecture(
    test_predictions: pd.DataFrame,
    history: pd.DataFrame,
    model_input: XrayData,
    training_summary: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """``metrics.json`` and PNG figures of one trained architecture on the held-out test split.

    The tasks (kinds, target columns, class names) are those the model was trained with, from the resolved
    parameters in ``training_summary``.
    """
    tasks = parse_training_params(training_summary["params"]).task_specs
    params = {
        **_evaluation_settings(evaluation, tasks),
        "model_name": training_summary["arch"],
        "n_params": training_summary["n_params"],
    }
    metrics, figures = evaluate_model(test_predictions, history, _train_labels(model_input, tasks), params)
    metrics["training"]["wall_time_s"] = training_summary["wall_time_s"]
    return metrics, _png_names(figures)


def physics_limit_predictions(
    model_input: XrayData, data_source: dict[str, Any], generation: dict[str, Any]
) -> pd.DataFrame:
    """Test-split predictions of the maximum-likelihood physics estimator (generated data only).

    For ingested lab data the forward model's settings are unknown, so the table is empty and the
    comparison has no physics row.
    """
    source = parse_params(DataSourceParams, data_source, "data_source")
    if source.kind != "generated":
        logger.info("physics-limit estimator skipped: data source is %s", source.kind)
        return pd.DataFrame()
    metadata = model_input.metadata
    rows = np.flatnonzero(metadata["split"].to_numpy() == "test")
    images = np.asarray(model_input.images[rows], dtype=np.float32)
    estimate = PhysicsLimitEstimator(SimulationConfig.from_params(generation)).predict(images)
    test = metadata.iloc[rows]
    frame = pd.DataFrame(
        {
            "image_id": test["image_id"].to_numpy(),
            "alloy_true": test["alloy"].astype(str).to_numpy(),
            "alloy_pred": estimate["alloy_pred"].astype(str).to_numpy(),
        }
    )
    for alloy in ALLOYS:
        frame[f"prob_{alloy}"] = estimate[f"prob_{alloy}"].to_numpy()
    frame["thickness_mm_true"] = test["thickness_mm"].to_numpy(dtype=float)
    frame["thickness_mm_pred"] = estimate["thickness_pred"].to_numpy()
    frame["absorption_true"] = test["absorption"].to_numpy(dtype=float)
    frame["absorption_pred"] = estimate["absorption_pred"].to_numpy()
    return frame


def evaluate_reference(
    predictions: pd.DataFrame, model_input: XrayData, evaluation: dict[str, Any], name: str
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """Metrics and figures of a model without training history (physics estimator, ensembles)."""
    if predictions.empty:
        return {}, {}
    params = {**_evaluation_settings(evaluation, REFERENCE_TASKS), "model_name": name}
    metrics, figures = evaluate_model(predictions, None, _train_labels(model_input, REFERENCE_TASKS), params)
    return metrics, _png_names(figures)


def ensemble_architectures(**predictions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Soft-voting and hard-voting ensembles over every trained architecture's test predictions."""
    return (
        ensemble_predictions(predictions, method="soft"),
        ensemble_predictions(predictions, method="hard"),
    )


def compare_architectures(
    physics_metrics: dict[str, Any],
    soft_metrics: dict[str, Any],
    hard_metrics: dict[str, Any],
    evaluation: dict[str, Any],
    **arch_metrics: dict[str, Any],
) -> tuple[pd.DataFrame, str, Figure]:
    """The study's cross-model tables (CSV and Markdown) and the per-alloy AP heatmap.

    Rows: every architecture, the two ensembles and, for generated data, the physics-limit estimator with
    each model's gap to it.
    """
    per_model: dict[str, dict[str, Any]] = dict(arch_metrics)
    per_model["ensemble_soft"] = soft_metrics
    per_model["ensemble_hard"] = hard_metrics
    reference = None
    if physics_metrics:
        per_model[PHYSICS_ROW] = physics_metrics
        reference = PHYSICS_ROW
    settings = parse_params(EvaluationParams, evaluation, "evaluation")
    table = comparison_table(per_model, tail_classes=settings.tail_classes, reference=reference)
    markdown = "\n".join(
        [
            "# Cross-architecture comparison (test split)",
            "",
            "## Average precision by alloy",
            "",
            to_markdown(ap_by_alloy_table(table)),
            "",
            "## Final training and validation accuracy and loss",
            "",
            to_markdown(training_summary_table(table)),
            "",
            "## All metrics",
            "",
            to_markdown(table),
            "",
        ]
    )
    heatmap = ap_heatmap(ap_by_alloy_table(table))
    return table.reset_index(), markdown, heatmap
