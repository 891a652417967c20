"""Node of the promotion pipeline: a thin wrapper over :func:`alloy_mtl.tracking.promotion.run_gate`."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from alloy_mtl.config import parse_params
from alloy_mtl.data.params import DataSourceParams
from alloy_mtl.data.store import XrayData
from alloy_mtl.evaluation import robustness
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.tracking.paired_gate import comparer, gate_conditions
from alloy_mtl.tracking.promotion import PromotionError, gate_markdown, parse_gate_settings, run_gate
from alloy_mtl.tracking.runs import RunTracker, active_tracker, experiment_name

logger = logging.getLogger(__name__)

SUITE_PREDICTIONS = "_suite_predictions"
"""The suffix of the gate's keyword inputs that carry an architecture's robustness-suite predictions."""


def _gate_images(
    data_source: dict[str, Any], generation: dict[str, Any], evaluation: dict[str, Any], model_input: XrayData
) -> robustness.ConditionImages:
    """The current run's robustness-suite conditions (regenerated: the same images the suite scored), else its
    test split."""
    source = parse_params(DataSourceParams, data_source, "data_source")
    suite = parse_params(EvaluationParams, evaluation, "evaluation").robustness
    conditions = robustness.simulate_conditions(generation, suite) if source.kind == "generated" else {}
    kinds = robustness.condition_kinds(generation, suite) if conditions else {}
    return gate_conditions(conditions, kinds, model_input)


def _run_predictions(tracker: RunTracker | None, after: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """This run's suite predictions (``<arch>_suite_predictions``) keyed by the MLflow run of each model."""
    if tracker is None:
        return {}
    known = {}
    for key, predictions in after.items():
        arch = key.removesuffix(SUITE_PREDICTIONS)
        run_id = tracker.run_for(arch) if key.endswith(SUITE_PREDICTIONS) else None
        if run_id is not None and isinstance(predictions, pd.DataFrame):
            known[run_id] = predictions
    return known


def promote_champion(  # noqa: PLR0917 (one input per catalog dataset)
    registry: dict[str, Any],
    data_source: dict[str, Any],
    generation: dict[str, Any],
    evaluation: dict[str, Any],
    model_input: XrayData,
    instruments: dict[str, dict[str, float]] | None,
    **after: Any,
) -> tuple[dict[str, Any], str]:
    """Register the best model of the chosen training run as ``challenger``; promote it if it beats the
    champion on the same images.

    Args:
        registry: ``params:registry`` (see ``conf/base/parameters_registry.yml``).
        data_source: ``params:data_source`` (generated data: the gate compares on the robustness suite).
        generation: ``params:generation`` (the suite's instrument).
        evaluation: ``params:evaluation`` (the suite's conditions).
        model_input: the current data (its test split where no suite runs).
        instruments: each suite condition's fitted instrument (``robustness_instruments``), for
            instrument-conditioned models; None where the suite has not run.
        **after: inside ``train_all`` each architecture's metrics and suite scores (``<arch>_metrics``,
            ``<arch>_robustness``), passed only so that the gate runs after every model is evaluated (their
            values are not used), and its suite predictions (``<arch>_suite_predictions``), which the
            challenger, a model of this run, reuses instead of predicting every image again (its registered
            model re-predicts a sample first: :func:`alloy_mtl.tracking.paired_gate.comparer`). With them and
            tracking off, the gate is skipped: the run logged no model, and promoting an older run's model
            would surprise.

    Returns:
        The gate's decision (``registry_decision``, logged to the parent run) and its markdown report.
    """
    settings = parse_gate_settings(registry)
    client = MlflowClient(mlflow.get_tracking_uri())
    tracker = active_tracker()
    if after and tracker is None:  # inside train_all with tracking off: this run logged no model to compare
        reason = "MLflow tracking is off for this run (conf mlflow.yml), so it logged no model to register"
        logger.warning("promotion gate skipped: %s", reason)
        decision = {"decision": "skipped", "reason": reason, "changed": False}
        return decision, gate_markdown(decision)
    if tracker is not None:
        experiment_ids = [tracker.experiment_id]
    else:
        experiment = client.get_experiment_by_name(experiment_name())
        if experiment is None:
            raise PromotionError(
                f"MLflow experiment '{experiment_name()}' does not exist at {mlflow.get_tracking_uri()}; "
                "run `kedro run --pipeline train_all` first"
            )
        experiment_ids = [experiment.experiment_id]
    compare = comparer(
        settings.model_name,
        lambda: _gate_images(data_source, generation, evaluation, model_input),
        instruments,
        n_resamples=settings.n_resamples,
        seed=settings.seed,
        level=settings.level,
        known=_run_predictions(tracker, after),
    )
    decision = run_gate(
        client,
        settings,
        experiment_ids,
        current_parent=None if tracker is None else tracker.parent_run_id,
        compare=compare,
    )
    if tracker is not None:
        tracker.set_tags(
            tracker.parent_run_id,
            {f"gate.{k}": v for k, v in decision.items() if k in ("decision", "version", "arch", "reason")},
        )
    return decision, gate_markdown(decision)
