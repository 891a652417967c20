"""Evaluation of one model: the metrics.json content and its named figures.

``params`` (all keys optional):

* ``model_name``: title prefix of the figures and ``metrics["model"]["name"]``;
* ``n_params``: parameter count, copied into ``metrics["model"]["n_params"]``;
* ``alloys``: class order (default :data:`alloy_mtl.constants.ALLOYS`);
* ``tasks``: the training task specs (``{name: {kind, target, ...}}``); their regression entries name
  the regression tasks and target columns, otherwise ``thickness -> thickness_mm`` and
  ``absorption -> absorption``; the classification entry names the accuracy columns of the history;
* ``shot_thresholds`` (``{"many": 100, "few": 20}``) and ``shot_bins`` (an int, explicit edges, or a
  dict task -> either; default 50) for the regression shot regions;
* ``class_shot_thresholds`` for the alloy groups (default: ``shot_thresholds``);
* ``ece_bins`` (15);
* ``bootstrap`` (``n_resamples``, ``seed``, ``level``): with a ``specimen_id`` column in the predictions,
  ``metrics["ci95"]`` holds specimen-bootstrap intervals of the headline metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation import plots
from alloy_mtl.evaluation.bootstrap import metric_intervals
from alloy_mtl.evaluation.classification import ECE_BINS, classification_metrics, labelled_rows
from alloy_mtl.evaluation.jsonable import to_jsonable
from alloy_mtl.evaluation.regression import (
    DEFAULT_BINS,
    DEFAULT_THRESHOLDS,
    classification_shot_metrics,
    regression_metrics,
)

logger = logging.getLogger(__name__)

DEFAULT_REGRESSION_TASKS: dict[str, str] = {"thickness": "thickness_mm", "absorption": "absorption"}
UNITS: dict[str, str] = {"thickness_mm": "mm", "absorption": "1/cm"}


def regression_tasks(params: Mapping[str, Any], predictions: pd.DataFrame) -> dict[str, str]:
    """Regression task -> target column for the tasks whose ``<target>_true`` and ``<target>_pred`` exist."""
    specs = params.get("tasks")
    if specs:
        wanted = {
            name: spec.get("target", name) for name, spec in specs.items() if spec.get("kind") == "regression"
        }
    else:
        wanted = dict(DEFAULT_REGRESSION_TASKS)
    present: dict[str, str] = {}
    for task, target in wanted.items():
        if {f"{target}_true", f"{target}_pred"} <= set(predictions.columns):
            present[task] = target
        else:
            logger.info("regression task %s: no %s_true/%s_pred columns, skipped", task, target, target)
    return present


def classification_task(params: Mapping[str, Any]) -> str:
    """Name of the classification task (its history columns are ``train_<name>_acc``); ``alloy`` by default."""
    for name, spec in (params.get("tasks") or {}).items():
        if spec.get("kind") == "classification":
            return name
    return "alloy"


def _train_values(train_labels: Mapping[str, Any], task: str, target: str) -> Any:
    for key in (task, target):
        if key in train_labels and train_labels[key] is not None:
            return train_labels[key]
    return None


def training_summary(history: pd.DataFrame | None, class_task: str = "alloy") -> dict[str, Any]:
    """Final train/val loss and accuracy (last epoch), epochs trained, mean epoch time and best val loss.

    ``epochs_trained`` is the number of history rows. Missing columns give ``None``; no history gives ``{}``.
    """
    if history is None or history.empty:
        return {}

    def last(column: str) -> Any:
        return history[column].iloc[-1] if column in history.columns else None

    summary: dict[str, Any] = {
        "final_train_loss": last("train_loss"),
        "final_val_loss": last("val_loss"),
        "final_train_acc": last(f"train_{class_task}_acc"),
        "final_val_acc": last(f"val_{class_task}_acc"),
        "epochs_trained": len(history),
        "mean_epoch_time_s": history["epoch_time_s"].mean() if "epoch_time_s" in history.columns else None,
    }
    if "val_loss" in history.columns and history["val_loss"].notna().any():
        best = history["val_loss"].idxmin()
        summary["best_val_loss"] = history.loc[best, "val_loss"]
        summary["best_epoch"] = history.loc[best, "epoch"] if "epoch" in history.columns else None
    numeric = history.select_dtypes(include="number")
    summary["last_epoch"] = numeric.iloc[-1].to_dict()
    return to_jsonable(summary)


def _figure(figures: dict[str, Figure], name: str, build: Callable[[], Figure]) -> None:
    try:
        figures[name] = build()
    except plots.PlotDataMissing as reason:
        logger.info("figure %s skipped: %s", name, reason)


def evaluate_model(
    predictions: pd.DataFrame,
    history: pd.DataFrame | None,
    train_labels: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """Metrics (metrics.json content) and named figures of one model's test predictions and history.

    ``train_labels`` holds the training split's labels: ``"alloy"`` (alloy strings) and, per regression
    task, its targets keyed by task name or target column (``"thickness"`` or ``"thickness_mm"``).
    Metrics: ``model``, ``classification`` (with ``shot_groups``), ``regression`` (per task) and
    ``training``. Figures: ``pr_curves``, ``roc_curves``, ``confusion_matrix``,
    ``confusion_matrix_normalized``, ``reliability``, ``scatter_<task>``, and from the history
    ``loss_curves``, ``accuracy_curves``, ``gradient_conflict`` (each skipped when its columns are absent).
    """
    params = dict(params or {})
    alloys = list(params.get("alloys", ALLOYS))
    name = str(params.get("model_name", ""))
    thresholds = params.get("shot_thresholds", DEFAULT_THRESHOLDS)
    class_thresholds = params.get("class_shot_thresholds", thresholds)
    ece_bins = int(params.get("ece_bins", ECE_BINS))

    classification = classification_metrics(predictions, alloys, ece_bins=ece_bins)
    train_alloys = train_labels.get("alloy")
    if train_alloys is None:
        logger.warning("train_labels has no 'alloy' entry: alloy shot groups skipped")
    else:
        rows = labelled_rows(predictions)
        classification["shot_groups"] = classification_shot_metrics(
            rows["alloy_true"], rows["alloy_pred"], train_alloys, alloys, class_thresholds
        )

    regression: dict[str, Any] = {}
    tasks = regression_tasks(params, predictions)
    for task, target in tasks.items():
        train_values = _train_values(train_labels, task, target)
        if train_values is None:
            raise ValueError(
                f"evaluate_model: train_labels has no entry {task!r} or {target!r} for the shot bins of "
                f"regression task {task!r}; keys present: {sorted(train_labels)}"
            )
        bins = params.get("shot_bins", DEFAULT_BINS)
        bins = bins.get(task, DEFAULT_BINS) if isinstance(bins, Mapping) else bins
        regression[task] = regression_metrics(
            predictions[f"{target}_true"],
            predictions[f"{target}_pred"],
            train_values,
            thresholds,
            bins,
            name=task,
        )
        regression[task]["target"] = target

    metrics = {
        "model": to_jsonable({"name": name or None, "n_params": params.get("n_params")}),
        "classification": classification,
        "regression": regression,
        "training": training_summary(history, classification_task(params)),
    }
    bootstrap = dict(params.get("bootstrap") or {})
    if "specimen_id" in predictions.columns and bootstrap.get("n_resamples", 0) > 0:
        metrics["ci95"] = to_jsonable(metric_intervals(predictions, alloys, tasks, **bootstrap))

    figures: dict[str, Figure] = {}
    _figure(figures, "pr_curves", lambda: plots.pr_curves(predictions, classification, alloys, name))
    _figure(figures, "roc_curves", lambda: plots.roc_curves(predictions, classification, alloys, name))
    _figure(
        figures,
        "confusion_matrix",
        lambda: plots.confusion_matrix_figure(classification, alloys, False, name),
    )
    _figure(
        figures,
        "confusion_matrix_normalized",
        lambda: plots.confusion_matrix_figure(classification, alloys, True, name),
    )
    if history is not None and not history.empty:
        _figure(figures, "loss_curves", lambda: plots.loss_curves(history, name))
        _figure(figures, "accuracy_curves", lambda: plots.accuracy_curves(history, name))
    for task, target in tasks.items():
        _figure(
            figures,
            f"scatter_{task}",
            lambda task=task, target=target: plots.scatter_pred_true(
                predictions[f"{target}_true"],
                predictions[f"{target}_pred"],
                task,
                regression[task]["overall"]["r2"],
                UNITS.get(target, ""),
            ),
        )
    _figure(
        figures,
        "reliability",
        lambda: plots.reliability_diagram(predictions, alloys, ece_bins, classification["ece"], name),
    )
    if history is not None and not history.empty:
        _figure(figures, "gradient_conflict", lambda: plots.gradient_conflict(history, name))
    return metrics, figures
