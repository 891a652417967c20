"""Checkpointing as a trainer callback: resume from ``last.pt`` at the start, save every epoch, keep ``best.pt``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alloy_mtl.mtl.parallel.process_group import is_main_process
from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.mtl.training.checkpoint_io import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    check_fingerprint,
    load_checkpoint,
    save_checkpoint,
)

if TYPE_CHECKING:
    from alloy_mtl.mtl.training.trainer import Trainer

logger = logging.getLogger(__name__)


class CheckpointCallback(Callback):
    """Writes ``last.pt`` every epoch and ``best.pt`` when the monitored metric improves; resumes from them.

    Every rank of a data-parallel run resumes from the same files; only rank 0 writes them. It runs last at an
    epoch's end (after callbacks that change state, such as FDS) and first at the start
    (so the others see the resumed state).

    Args:
        directory: folder of ``last.pt`` / ``best.pt``.
        resume: continue from ``last.pt`` when it exists (its fingerprint must match this run).
        run_identity: what else a resumed checkpoint must match (data, hyperparameters); ``epochs`` is
            deliberately not part of it, so raising ``epochs`` continues a finished run.
    """

    order = 100

    def __init__(
        self, directory: str | Path, resume: bool = False, run_identity: Mapping[str, Any] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.resume = resume
        self.run_identity = dict(run_identity or {})

    def fingerprint(self, trainer: Trainer) -> dict[str, Any]:
        """The trainer's configuration identity plus this run's identity."""
        return {**trainer.fingerprint(), **{f"run.{k}": v for k, v in self.run_identity.items()}}

    def on_train_begin(self, trainer: Trainer) -> None:
        """Restore ``last.pt`` (and the best weights) when resuming.

        Raises:
            CheckpointMismatchError: the checkpoint was written by another configuration.
        """
        last = self.directory / LAST_CHECKPOINT
        if not self.resume:
            if last.is_file():
                logger.warning("overwriting checkpoints in %s (resume=False)", self.directory)
            return
        if not last.is_file():
            logger.info("resume requested but %s does not exist; starting from scratch", last)
            return
        state = load_checkpoint(last)
        check_fingerprint(state["fingerprint"], self.fingerprint(trainer), last)
        trainer.load_state_dict(state)
        best = self.directory / BEST_CHECKPOINT
        if trainer.settings.restore_best and best.is_file():
            kept = load_checkpoint(best)
            trainer.best_state = kept["model"] if kept.get("ema") is None else kept["ema"]
        logger.info("resumed from %s at epoch %d", last, trainer.epoch)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Save ``last.pt``, and ``best.pt`` on improvement (rank 0 only under DDP: the replicas are identical)."""
        if not is_main_process():
            return
        state = {**trainer.state_dict(), "fingerprint": self.fingerprint(trainer)}
        save_checkpoint(state, self.directory / LAST_CHECKPOINT)
        if trainer.tracker.best_epoch == epoch:
            save_checkpoint(state, self.directory / BEST_CHECKPOINT)
