"""Nodes of the evaluation pipelines: thin wrappers over ``alloy_mtl.evaluation`` and the physics estimator."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.store import XrayData
from alloy_mtl.evaluation.comparison import (
    ap_by_alloy_table,
    comparison_table,
    to_markdown,
    training_summary_table,
)
from alloy_mtl.evaluation.ensemble import ensemble_predictions
from alloy_mtl.evaluation.plots import ap_heatmap
from alloy_mtl.evaluation.report import evaluate_model
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.simulator import SimulationConfig

logger = logging.getLogger(__name__)

PHYSICS_ROW = "physics_limit"
REGRESSION_TARGETS = ("thickness_mm", "absorption")


def _train_labels(model_input: XrayData) -> dict[str, np.ndarray]:
    train = model_input.metadata[model_input.metadata["split"] == "train"]
    labels: dict[str, np.ndarray] = {"alloy": train["alloy"].astype(str).to_numpy()}
    for target in REGRESSION_TARGETS:
        labels[target] = pd.to_numeric(train[target], errors="coerce").to_numpy(dtype=float)
    return labels


def _png_names(figures: dict[str, Figure]) -> dict[str, Figure]:
    return {f"{name}.png": figure for name, figure in figures.items()}


def evaluate_architecture(
    test_predictions: pd.DataFrame,
    history: pd.DataFrame,
    model_input: XrayData,
    training_summary: dict[str, Any],
    evaluation: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """``metrics.json`` and PNG figures of one trained architecture on the held-out test split."""
    params = {
        **evaluation,
        "model_name": training_summary["arch"],
        "n_params": training_summary["n_params"],
        "tasks": training_summary["params"]["tasks"],
    }
    metrics, figures = evaluate_model(test_predictions, history, _train_labels(model_input), params)
    metrics["training"]["wall_time_s"] = training_summary["wall_time_s"]
    return metrics, _png_names(figures)


def physics_limit_predictions(
    model_input: XrayData, data_source: dict[str, Any], generation: dict[str, Any]
) -> pd.DataFrame:
    """Test-split predictions of the maximum-likelihood physics estimator (generated data only).

    For ingested lab data the forward model's settings are unknown, so the table is empty and the
    comparison has no physics row.
    """
    if data_source.get("kind", "generated") != "generated":
        logger.info("physics-limit estimator skipped: data source is %s", data_source.get("kind"))
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
    metrics, figures = evaluate_model(
        predictions, None, _train_labels(model_input), {**evaluation, "model_name": name}
    )
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
    table = comparison_table(per_model, tail_classes=evaluation.get("tail_classes"), reference=reference)
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
