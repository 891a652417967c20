"""Training callbacks (the hook tracking plugs into) and the early-stopping / best-metric state."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from alloy_mtl.mtl.parallel.process_group import is_main_process

if TYPE_CHECKING:
    from .trainer import Trainer

logger = logging.getLogger(__name__)


class Callback:
    """Base callback; override any hook.

    Hooks run in ascending ``order`` at an epoch's and the training's end and in descending ``order`` at
    its start (equal orders keep the order the callbacks were given), so a callback with a high order, such
    as checkpointing, restores state before the others start and saves it after they changed it.
    """

    order: int = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once before the first (or resumed) epoch."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Called once per epoch with that epoch's metrics (the history row).

        Runs before the epoch's checkpoint is written, so state a callback changes is saved with it.
        """

    def on_train_end(self, trainer: Trainer, history: pd.DataFrame) -> None:
        """Called once at the end with the full history."""


class LoggingCallback(Callback):
    """Logs the main metrics of every epoch with ``logging`` (INFO)."""

    def __init__(self, keys: tuple[str, ...] = ("train_loss", "val_loss", "lr"), label: str = "") -> None:
        self.keys = keys
        self.label = label
        """Prefix of each line (the architecture: several models may train at once)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Log ``keys`` of ``metrics`` (rank 0 only under DDP: the others hold the same numbers)."""
        if not is_main_process():
            return
        shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in self.keys if k in metrics)
        logger.info("%sepoch %d: %s", f"{self.label} " if self.label else "", epoch, shown)


class MetricTracker:
    """Best value of a monitored metric plus patience counting, shared by early stopping and best checkpoint.

    Args:
        mode: ``min`` or ``max``.
        patience: epochs without improvement before :meth:`should_stop` may return True.
        min_epochs: never stop before this many epochs.
        min_delta: improvement smaller than this does not count.
    """

    def __init__(
        self, mode: str = "min", patience: int = 10, min_epochs: int = 15, min_delta: float = 0.0
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"monitor mode must be 'min' or 'max', got {mode!r}")
        if patience < 0 or min_epochs < 0:
            raise ValueError(f"patience and min_epochs must be >= 0, got {patience}, {min_epochs}")
        self.mode = mode
        self.patience = int(patience)
        self.min_epochs = int(min_epochs)
        self.min_delta = float(min_delta)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def is_improvement(self, value: float) -> bool:
        """True when ``value`` beats the best so far by more than ``min_delta`` (NaN never does)."""
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, value: float) -> bool:
        """Record an epoch's value; returns True when it is a new best."""
        if self.is_improvement(value):
            self.best, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    def should_stop(self, epoch: int) -> bool:
        """True when ``patience`` epochs passed without improvement and ``epoch >= min_epochs``."""
        return epoch >= self.min_epochs and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Serializable state."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
