"""What a :class:`~alloy_mtl.mtl.training.trainer.Trainer` saves to resume and restores from it, and the
fingerprint of its configuration that a resumed checkpoint must match."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from alloy_mtl.mtl.training.checkpoint_io import capture_rng_state, model_signature, restore_rng_state

if TYPE_CHECKING:
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
