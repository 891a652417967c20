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
from alloy_mtl.evaluation.classification import ece_at_temperature
from alloy_mtl.evaluation.comparison import (
    ap_by_alloy_table,
    comparison_table,
    headline_table,
    to_markdown,
    training_summary_table,
)
from alloy_mtl.evaluation.conformal import conformal_coverage, conformal_markdown
from alloy_mtl.evaluation.ensemble import ensemble_predictions, regression_members
from alloy_mtl.evaluation.ensemble_selection import describe_weights, select_ensemble, selected_weights
from alloy_mtl.evaluation.evaluation_set import (
    batch_instrument,
    evaluation_set_config,
    simulate_evaluation_set,
    simulate_validation_set,
)
from alloy_mtl.evaluation.ood import OOD_RESAMPLES, model_ood_report, ood_markdown, simulate_ood_set
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.physics_unknown_evaluation import with_physics
from alloy_mtl.evaluation.plots import ap_heatmap
from alloy_mtl.evaluation.report import evaluate_model
from alloy_mtl.mtl.labelled_prediction import predict_images
from alloy_mtl.mtl.loading.input_guards import refused_images
from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.mtl.scoring import score_images
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


def _no_predictions() -> pd.DataFrame:
    """An empty predictions table that survives a CSV round trip (a header, no rows)."""
    return pd.DataFrame(columns=["image_id"])


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


def _with_specimens(predictions: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with each image's ``specimen_id`` (the unit the bootstrap intervals resample)."""
    if predictions.empty or "specimen_id" in predictions.columns:
        return predictions
    specimens = metadata.set_index(metadata["image_id"].astype(str))["specimen_id"]
    return predictions.assign(specimen_id=predictions["image_id"].astype(str).map(specimens).to_numpy())


def _evaluation_set_metrics(
    predictions: pd.DataFrame, train_labels: dict[str, np.ndarray], params: dict[str, Any]
) -> dict[str, Any]:
    if predictions.empty:
        return {}
    metrics, _ = evaluate_model(predictions, None, train_labels, params)
    summary = {key: metrics[key] for key in ("classification", "regression", "ci95") if key in metrics}
    summary["n_images"] = len(predictions)
    return summary


def evaluate_architecture(  # noqa: PLR0917 (one input per catalog dataset)
    test_predictions: pd.DataFrame,
    evaluation_set_predictions: pd.DataFrame,
    history: pd.DataFrame,
    model_input: XrayData,
    training_summary: dict[str, Any],
    evaluation: dict[str, Any],
    ood_predictions: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """``metrics.json`` and PNG figures of one trained architecture on the held-out test split.

    The tasks (kinds, target columns, class names) are those the model was trained with, from the resolved
    parameters in ``training_summary``. With generated data, ``metrics["evaluation_set"]`` holds the same
    metrics on the large simulated evaluation set; every headline metric carries a 95% specimen-bootstrap
    interval (``ci95``).
    """
    tasks = parse_training_params(training_summary["params"]).task_specs
    settings = parse_params(EvaluationParams, evaluation, "evaluation")
    params = {
        **_evaluation_settings(evaluation, tasks),
        "model_name": training_summary["arch"],
        "n_params": training_summary["n_params"],
    }
    train_labels = _train_labels(model_input, tasks)
    predictions = _with_specimens(test_predictions, model_input.metadata)
    metrics, figures = evaluate_model(predictions, history, train_labels, params)
    metrics["training"]["wall_time_s"] = training_summary["wall_time_s"]
    metrics["evaluation_set"] = _evaluation_set_metrics(evaluation_set_predictions, train_labels, params)
    metrics["calibration"] = _calibration(
        training_summary.get("calibration") or {}, evaluation_set_predictions
    )
    metrics["ood"] = {
        "fit": dict(training_summary.get("ood") or {}),
        **model_ood_report(
            evaluation_set_predictions,
            pd.DataFrame() if ood_predictions is None else ood_predictions,
            n_resamples=min(settings.bootstrap.n_resamples, OOD_RESAMPLES),
            seed=settings.bootstrap.seed,
        ),
    }
    fitted_sets = training_summary.get("conformal") or {}
    first = next((t for t in tasks if t.is_classification), None)
    if fitted_sets and first is not None:
        targets = {t.name: t.target for t in tasks if not t.is_classification}
        metrics["conformal"] = {
            name: conformal_coverage(frame, fitted_sets, list(first.classes), targets)
            for name, frame in (("test", test_predictions), ("evaluation_set", evaluation_set_predictions))
        }
    return metrics, _png_names(figures)


def _calibration(fitted: dict[str, dict[str, Any]], evaluation_set: pd.DataFrame) -> dict[str, Any]:
    """The fitted temperatures with their validation ECE before and after, and the evaluation set's ECE before
    (``ece`` in ``evaluation_set.classification`` is after: the model answers calibrated)."""
    report = {task: dict(values) for task, values in fitted.items()}
    if "alloy" in report and not evaluation_set.empty:
        report["alloy"]["evaluation_set_ece_before"] = ece_at_temperature(
            evaluation_set, report["alloy"]["temperature"]
        )
    return report


def fit_evaluation_set_instrument(
    data_source: dict[str, Any], generation: dict[str, Any], evaluation: dict[str, Any]
) -> dict[str, float]:
    """The evaluation set's instrument, fitted from its images alone (no labels) inside the declared
    tolerances: what an instrument-conditioned model is told (empty for lab data or when the set is off)."""
    settings = parse_params(EvaluationParams, evaluation, "evaluation").evaluation_set
    source = parse_params(DataSourceParams, data_source, "data_source")
    if source.kind != "generated" or not settings.enabled or settings.n_images == 0:
        return {}
    images, _ = simulate_evaluation_set(generation, settings)
    instrument = batch_instrument(generation, images)
    logger.info("evaluation set: fitted instrument %s", instrument)
    return instrument


def predict_evaluation_set(
    model: dict[str, Any],
    data_source: dict[str, Any],
    generation: dict[str, Any],
    evaluation: dict[str, Any],
    instrument: dict[str, float] | None = None,
) -> pd.DataFrame:
    """A trained model's predictions on the large simulated evaluation set (empty for lab data or when off);
    an instrument-conditioned model is told ``instrument`` (see :func:`fit_evaluation_set_instrument`)."""
    settings = parse_params(EvaluationParams, evaluation, "evaluation").evaluation_set
    source = parse_params(DataSourceParams, data_source, "data_source")
    if source.kind != "generated" or not settings.enabled or settings.n_images == 0:
        return _no_predictions()
    images, metadata = simulate_evaluation_set(generation, settings)
    return predict_images(model, images, metadata, instrument=instrument or None)


KNOWN_SUFFIX = "_evaluation_set_predictions"
OOD_SUFFIX = "_ood_predictions"
"""Keyword suffixes of :func:`answer_with_physics`'s per-architecture inputs."""


def predict_ood_set(
    model: dict[str, Any],
    data_source: dict[str, Any],
    generation: dict[str, Any],
    evaluation: dict[str, Any],
    instrument: dict[str, float] | None = None,
) -> pd.DataFrame:
    """A trained model's answers and unknown-material scores on the generated OOD set (``evaluation.ood``),
    imaged by the evaluation set's instrument; empty for lab data or when off. An image the input guards would
    refuse scores ``inf`` (refused is caught)."""
    settings = parse_params(EvaluationParams, evaluation, "evaluation")
    source = parse_params(DataSourceParams, data_source, "data_source")
    if source.kind != "generated" or not settings.ood.enabled or settings.ood.images_per_material == 0:
        return pd.DataFrame(columns=["image_id", "specimen_id", "material", "family", "ood_score"])
    config = evaluation_set_config(generation, settings.evaluation_set)
    images, metadata = simulate_ood_set(config, settings.ood.images_per_material)
    frame = pd.concat([metadata, score_images(model, images, instrument=instrument or None)], axis=1)
    refused = refused_images(images)
    frame.loc[refused, "ood_score"] = np.inf
    frame["refused"] = refused
    return frame


def predict_validation(
    model: dict[str, Any],
    model_input: XrayData,
    data_source: dict[str, Any],
    generation: dict[str, Any],
    evaluation: dict[str, Any],
) -> pd.DataFrame:
    """A trained model's predictions of what the ensemble's weights are chosen on: with generated data the
    generated validation set (``evaluation.ensemble_selection.n_images`` > 0), else the validation split."""
    settings = parse_params(EvaluationParams, evaluation, "evaluation").ensemble_selection
    source = parse_params(DataSourceParams, data_source, "data_source")
    if source.kind == "generated" and settings.n_images > 0:
        images, meta = simulate_validation_set(generation, settings)
        return predict_images(model, images, meta).assign(selection_set="generated_validation")
    metadata = model_input.metadata
    rows = np.flatnonzero(metadata["split"].to_numpy() == "val")
    if len(rows) == 0:
        raise ValueError("model input has no rows in split 'val': the ensemble's weights are chosen on it")
    predictions = predict_images(model, np.asarray(model_input.images[rows]), metadata.iloc[rows])
    return predictions.assign(selection_set="val")


def choose_ensemble(evaluation: dict[str, Any], **validation_predictions: pd.DataFrame) -> dict[str, Any]:
    """The ``ensemble_selected`` row's weights, chosen on every architecture's validation predictions
    (``evaluation.ensemble_selection``; see :func:`alloy_mtl.evaluation.ensemble_selection.select_ensemble`)."""
    settings = parse_params(EvaluationParams, evaluation, "evaluation").ensemble_selection
    return select_ensemble(validation_predictions, settings)


def physics_limit_predictions(
    model_input: XrayData, data_source: dict[str, Any], generation: dict[str, Any], evaluation: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions of the maximum-likelihood physics estimator on the test split and the evaluation set.

    Generated data only: for ingested lab data the forward model's settings are unknown, so both tables are
    empty and the comparison has no physics row.
    """
    source = parse_params(DataSourceParams, data_source, "data_source")
    if source.kind != "generated":
        logger.info("physics-limit estimator skipped: data source is %s", source.kind)
        return _no_predictions(), _no_predictions()
    estimator = PhysicsLimitEstimator(SimulationConfig.from_params(generation))
    metadata = model_input.metadata
    rows = np.flatnonzero(metadata["split"].to_numpy() == "test")
    test = _physics_frame(
        estimator, np.asarray(model_input.images[rows], dtype=np.float32), metadata.iloc[rows]
    )
    settings = parse_params(EvaluationParams, evaluation, "evaluation").evaluation_set
    if not settings.enabled or settings.n_images == 0:
        return test, _no_predictions()
    images, eval_metadata = simulate_evaluation_set(generation, settings)
    evaluation_set = _physics_frame(estimator, images, eval_metadata)
    return test, evaluation_set.assign(specimen_id=eval_metadata["specimen_id"].to_numpy())


def _physics_frame(estimator: PhysicsLimitEstimator, images: np.ndarray, test: pd.DataFrame) -> pd.DataFrame:
    estimate = estimator.predict(images)
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
    predictions: pd.DataFrame,
    evaluation_set_predictions: pd.DataFrame,
    model_input: XrayData,
    evaluation: dict[str, Any],
    name: str,
) -> tuple[dict[str, Any], dict[str, Figure]]:
    """Metrics and figures of a model without training history (physics estimator, ensembles)."""
    if predictions.empty:
        return {}, {}
    params = {**_evaluation_settings(evaluation, REFERENCE_TASKS), "model_name": name}
    train_labels = _train_labels(model_input, REFERENCE_TASKS)
    metrics, figures = evaluate_model(
        _with_specimens(predictions, model_input.metadata), None, train_labels, params
    )
    metrics["evaluation_set"] = _evaluation_set_metrics(evaluation_set_predictions, train_labels, params)
    return metrics, _png_names(figures)


SUMMARY_PREFIX = "summary__"
"""Inputs of :func:`ensemble_architectures` named ``summary__<arch>`` are training summaries; the rest are
predictions."""


def _ensemble_inputs(
    evaluation: dict[str, Any], inputs: dict[str, pd.DataFrame | dict[str, Any]]
) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """``(predictions by architecture, regression members by target)`` of an ensemble node's inputs."""
    predictions = {k: v for k, v in inputs.items() if not k.startswith(SUMMARY_PREFIX)}
    summaries = {k.removeprefix(SUMMARY_PREFIX): v for k, v in inputs.items() if k.startswith(SUMMARY_PREFIX)}
    tolerance = parse_params(EvaluationParams, evaluation, "evaluation").ensemble_regression_tolerance
    errors = {arch: dict(summary.get("val_mae") or {}) for arch, summary in summaries.items()}
    return predictions, regression_members(errors, tolerance)


def _member_specimens(ensemble: pd.DataFrame, predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``ensemble`` with the ``specimen_id`` of its first member's rows, when that member has them."""
    first = next(iter(predictions.values()))
    return _with_specimens(ensemble, first) if "specimen_id" in first.columns else ensemble


def ensemble_architectures(
    evaluation: dict[str, Any], **inputs: pd.DataFrame | dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Soft-voting and hard-voting ensembles over every trained architecture's predictions of one image set,
    every model weighing alike (the reference study's ensembles).

    Args:
        evaluation: ``params:evaluation`` (``ensemble_regression_tolerance``).
        inputs: ``<arch>``: its predictions; ``summary__<arch>``: its training summary, whose ``val_mae`` decides
            which models a regression target averages (a summary without it keeps the model).
    """
    predictions, regression = _ensemble_inputs(evaluation, inputs)
    if any(frame.empty for frame in predictions.values()):
        return _no_predictions(), _no_predictions()
    soft, hard = (
        _member_specimens(
            ensemble_predictions(predictions, method=method, regression=regression), predictions
        )
        for method in ("soft", "hard")
    )
    return soft, hard


def selected_ensemble(
    evaluation: dict[str, Any], selection: dict[str, Any], **inputs: pd.DataFrame | dict[str, Any]
) -> pd.DataFrame:
    """The soft-voting ensemble weighted as chosen on the validation split (``selection``, the output of
    :func:`choose_ensemble`), over one image set; inputs otherwise as :func:`ensemble_architectures`'."""
    predictions, regression = _ensemble_inputs(evaluation, inputs)
    if any(frame.empty for frame in predictions.values()):
        return _no_predictions()
    weights = selected_weights(selection, list(predictions))
    soft = ensemble_predictions(predictions, method="soft", regression=regression, weights=weights)
    return _member_specimens(soft, predictions)


def _headline_section(title: str, table: pd.DataFrame, tasks: list[str]) -> list[str]:
    """Markdown lines: the headline metrics with their intervals, then AP by alloy."""
    close = "; " if "(" in title else " ("
    return [
        f"## {title}{close}95% specimen-bootstrap intervals)",
        "",
        to_markdown(headline_table(table, tasks)),
        "",
        "### Average precision by alloy",
        "",
        to_markdown(ap_by_alloy_table(table)),
        "",
    ]


def _selection_set(selection: dict[str, Any]) -> str:
    if selection.get("split") == "generated_validation":
        return "the generated validation set (validation detector units, settings inside the tolerances)"
    return "the validation split"


def selection_note(selection: dict[str, Any]) -> str:
    """One Markdown paragraph: how ``ensemble_selected`` was weighed and its validation score."""
    scores = selection.get("validation", {}).get("macro_ap", {})
    members = {k: v for k, v in scores.items() if not k.startswith("ensemble_")}
    best = max(members, key=members.__getitem__) if members else None
    how = {
        "greedy": f"greedy forward selection with replacement on macro AP ({selection.get('rounds')} rounds)",
        "loglik": "maximum validation log-likelihood",
        "equal": "equal weights",
    }.get(selection.get("method"), str(selection.get("method")))
    text = (
        f"`ensemble_selected` weighs the models as chosen on {_selection_set(selection)} ({selection.get('n_images')} "
        f"images; {how}): {describe_weights(selection.get('weights', {}))}."
    )
    if best is not None and "ensemble_selected" in scores:
        text += (
            f" Validation macro AP {scores['ensemble_selected']:.4f}, equal weights "
            f"{scores.get('ensemble_soft', float('nan')):.4f}, best member {best} {scores[best]:.4f}."
        )
    return text + " `ensemble_soft` and `ensemble_hard` weigh every model alike."


def answer_with_physics(
    physics_unknown: pd.DataFrame | None, **predictions: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Per architecture, what it answers ``unknown`` with the physics unknown-designation score beside it, as
    folder inference answers (:func:`alloy_mtl.evaluation.physics_unknown_evaluation.with_physics`), from its
    ``<arch>_evaluation_set_predictions`` and ``<arch>_ood_predictions`` (unknown-material set) predictions and
    ``physics_unknown`` (the unknown_materials pipeline's per-image scores of the same images; empty without)."""
    if physics_unknown is None or physics_unknown.empty:
        return {}
    archs = [key.removesuffix(KNOWN_SUFFIX) for key in predictions if key.endswith(KNOWN_SUFFIX)]
    answers = {
        arch: with_physics(predictions[arch + KNOWN_SUFFIX], predictions[arch + OOD_SUFFIX], physics_unknown)
        for arch in archs
    }
    return {arch: answer for arch, answer in answers.items() if answer}


def compare_architectures(
    physics_metrics: dict[str, Any],
    soft_metrics: dict[str, Any],
    hard_metrics: dict[str, Any],
    evaluation: dict[str, Any],
    *,
    selected_metrics: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    physics_unknown_report: dict[str, Any] | None = None,
    physics_unknown_answers: dict[str, Any] | None = None,
    **arch_metrics: dict[str, Any],
) -> tuple[pd.DataFrame, str, Figure]:
    """The study's cross-model tables (CSV and Markdown) and the per-alloy AP heatmap.

    Rows: every architecture, the equal-weight soft and hard ensembles, ``ensemble_selected`` (weights chosen
    on the validation split, ``selection``, noted under the title) and, for generated data, the physics-limit
    estimator with each model's gap to it. With generated data the tables and the heatmap are those of the
    large simulated evaluation set (the test split's follow); every headline metric carries its 95%
    specimen-bootstrap interval. The unknown-materials section adds the physics unknown-designation score's
    row (``physics_unknown_report``, the unknown_materials pipeline's) and each model's answers with it
    (``physics_unknown_answers``: :func:`answer_with_physics`) when given.
    """
    per_model: dict[str, dict[str, Any]] = dict(arch_metrics)
    per_model["ensemble_soft"] = soft_metrics
    per_model["ensemble_hard"] = hard_metrics
    if selected_metrics is not None:
        per_model["ensemble_selected"] = selected_metrics
    reference = None
    if physics_metrics:
        per_model[PHYSICS_ROW] = physics_metrics
        reference = PHYSICS_ROW
    settings = parse_params(EvaluationParams, evaluation, "evaluation")
    test = comparison_table(per_model, tail_classes=settings.tail_classes, reference=reference)
    tasks = sorted({c.removeprefix("r2_") for c in test.columns if c.startswith("r2_") and "_ci_" not in c})
    sections = ["# Cross-architecture comparison", ""]
    if selection:
        sections += [selection_note(selection), ""]
    evaluation_set = {name: m["evaluation_set"] for name, m in per_model.items() if m.get("evaluation_set")}
    tables = [("test", test)]
    if evaluation_set:
        large = comparison_table(evaluation_set, tail_classes=settings.tail_classes, reference=reference)
        n_images = max(m.get("n_images", 0) for m in evaluation_set.values())
        tables.insert(0, ("evaluation_set", large))
        title = f"Large evaluation set ({n_images} images of fresh specimens, balanced"
        sections += _headline_section(title, large, tasks)
    sections += _headline_section("Test split", test, tasks)
    sections += ood_markdown(
        {name: dict(m.get("ood") or {}) for name, m in arch_metrics.items()},
        physics_unknown_report,
        physics_unknown_answers,
    )
    for where, title in (("evaluation_set", "large evaluation set"), ("test", "test split")):
        sections += conformal_markdown(
            {name: (m.get("conformal") or {}).get(where) or {} for name, m in arch_metrics.items()}, title
        )
    sections += [
        "## Final training and validation accuracy and loss",
        "",
        to_markdown(training_summary_table(test)),
        "",
        "## All metrics (test split)",
        "",
        to_markdown(test),
        "",
    ]
    heatmap = ap_heatmap(ap_by_alloy_table(tables[0][1]))
    combined = pd.concat([table.assign(evaluated_on=name) for name, table in tables]).reset_index()
    return combined, "\n".join(sections), heatmap
