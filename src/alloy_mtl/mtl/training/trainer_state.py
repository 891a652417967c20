"""What a :class:`~alloy_mtl.mtl.training.trainer.Trainer` saves to resume and restores from it, the
fingerprint of its configuration that a resumed checkpoint must match, and what its finished run delivers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from alloy_mtl.mtl.training.checkpoint_io import capture_rng_state, model_signature, restore_rng_state

if TYPE_CHECKING:
    from alloy_mtl.mtl.tasks import TaskSpec
    from alloy_mtl.mtl.training.trainer import Trainer


def trainer_fingerprint(trainer: Trainer) -> dict[str, Any]:
    """Identity of the training configuration: model signature, tasks, gradient method, optimizer."""
    return {
        "model": model_signature(trainer.model),
        "tasks": [[t.name, t.kind, str(getattr(t, "num_outputs", ""))] for t in trainer.tasks],
        "gradient_method": trainer.method.name,
        "optimizer": trainer.settings.optimizer,
        "dropout_rng": "model",  # checkpoints from before the model's own dropout generator differ
        **({"ema": True} if trainer.ema is not None else {}),
    }


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """Weights, optimizer, scheduler, gradient method, early stopping, history and RNG states."""
    return {
        "epoch": trainer.epoch,
        "stopped": trainer.stopped,
        "model": trainer.model.state_dict(),
        "ema": None if trainer.ema is None else trainer.ema.module.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "gradient_method": trainer.method.state_dict(),
        "tracker": trainer.tracker.state_dict(),
        "history": [dict(row) for row in trainer.history],
        "rng": capture_rng_state(trainer.generators),
    }


def restore_trainer_state(trainer: Trainer, state: Mapping[str, Any]) -> None:
    """Put :func:`trainer_state` output back into ``trainer``."""
    trainer.model.load_state_dict(state["model"])
    if trainer.ema is not None:
        trainer.ema.module.load_state_dict(state["ema"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.method.load_state_dict(state["gradient_method"])
    trainer.tracker.load_state_dict(state["tracker"])
    trainer.history = [dict(row) for row in state["history"]]
    trainer.epoch = int(state["epoch"])
    trainer.stopped = bool(state["stopped"])
    restore_rng_state(state["rng"], trainer.generators)


def delivered_validation(
    trainer: Trainer, history: pd.DataFrame, tasks: Sequence[TaskSpec]
) -> dict[str, Any]:
    """The epoch whose weights the run delivers and its validation MAE per regression target (original units):
    ``{"delivered_epoch": 7, "val_mae": {"thickness_mm": 0.31, ...}}``. The ensembles weigh their members'
    regression outputs by it (``alloy_mtl.evaluation.ensemble``)."""
    if history.empty:
        return {"delivered_epoch": 0, "val_mae": {}}
    restored = (
        trainer.settings.restore_best and trainer.best_state is not None and trainer.tracker.best_epoch > 0
    )
    epoch = int(trainer.tracker.best_epoch) if restored else int(history["epoch"].iloc[-1])
    row = history.loc[history["epoch"] == epoch].iloc[-1]
    errors = {
        task.target: float(row[f"val_{task.name}_mae"])
        for task in tasks
        if not task.is_classification
        and f"val_{task.name}_mae" in row
        and np.isfinite(row[f"val_{task.name}_mae"])
    }
    return {"delivered_epoch": epoch, "val_mae": errors}
