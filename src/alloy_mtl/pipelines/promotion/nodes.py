"""Node of the promotion pipeline: a thin wrapper over :func:`alloy_mtl.tracking.promotion.run_gate`."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from alloy_mtl.tracking.promotion import PromotionError, parse_gate_settings, run_gate
from alloy_mtl.tracking.runs import active_tracker, experiment_name

logger = logging.getLogger(__name__)


def promote_champion(registry: dict[str, Any], *after: Any) -> dict[str, Any]:
    """Register the best model of the chosen training run as ``challenger``; promote it if it wins.

    Args:
        registry: ``params:registry`` (see ``conf/base/parameters_registry.yml``).
        *after: inside ``train_all`` the per-architecture metrics, passed only so that the gate runs after
            every model is evaluated (their values are not used). With them and tracking off, the gate is
            skipped: the run logged no model, and promoting an older run's model would surprise.

    Returns:
        The gate's decision (saved as ``registry_decision`` and logged to the parent run).
    """
    settings = parse_gate_settings(registry)
    client = MlflowClient(mlflow.get_tracking_uri())
    tracker = active_tracker()
    if after and tracker is None:  # inside train_all with tracking off: this run logged no model to compare
        reason = "MLflow tracking is off for this run (conf mlflow.yml), so it logged no model to register"
        logger.warning("promotion gate skipped: %s", reason)
        return {"decision": "skipped", "reason": reason, "changed": False}
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
    decision = run_gate(
        client, settings, experiment_ids, current_parent=None if tracker is None else tracker.parent_run_id
    )
    if tracker is not None:
        tracker.set_tags(
            tracker.parent_run_id,
            {f"gate.{k}": v for k, v in decision.items() if k in ("decision", "version", "arch", "reason")},
        )
    return decision
