"""Per-epoch MLflow metrics through the trainer's callback protocol (``alloy_mtl.mtl.training.callbacks.Callback``)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.tracking.runs import RunTracker, active_tracker

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


class MlflowEpochCallback(Callback):
    """Logs every numeric value of each epoch's history row to one MLflow run, with ``step = epoch``.

    The history row holds train/val loss and accuracy per task, the learning rate, task weights and the
    gradient diagnostics (cosine, conflict share); whatever the trainer adds later is logged as well.
    Writes go through the :class:`RunTracker`, which writes only in its owning process and on rank 0.
    """

    def __init__(self, tracker: RunTracker, run_id: str) -> None:
        self.tracker = tracker
        self.run_id = run_id

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        """Log the epoch's numeric metrics (NaN included: MLflow stores it)."""
        values = {
            key: float(value)
            for key, value in metrics.items()
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        }
        try:
            self.tracker.log_metrics(self.run_id, values, step=int(epoch))
        except Exception:  # a tracking hiccup must not kill an hour of training
            logger.exception("could not log epoch %d metrics to MLflow run %s", epoch, self.run_id)

    def on_train_end(self, trainer: Any, history: pd.DataFrame) -> None:
        """Record how many epochs ran."""
        finite = [v for v in history.get("val_loss", []) if isinstance(v, float) and math.isfinite(v)]
        summary = {"epochs_run": float(len(history))}
        if finite:
            summary["best_val_loss"] = min(finite)
        self.tracker.log_metrics(self.run_id, summary)


def training_callbacks(key: str) -> list[Callback]:
    """The tracking callbacks for the model ``key`` (e.g. ``resnet18``) in the current ``kedro run``.

    Empty when MLflow tracking is off, or in a process that does not own the run (a worker, rank > 0).
    """
    tracker = active_tracker()
    if tracker is None:
        return []
    run_id = tracker.child(key)
    return [] if run_id is None else [MlflowEpochCallback(tracker, run_id)]
