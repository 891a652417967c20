"""Learning-rate schedules by name, stepped once per epoch with the monitored metric.

``reduce_on_plateau`` is the reference study's schedule (the metric drives it); ``cosine`` warms up linearly
for ``warmup_epochs`` and then decays to ``min_lr`` along a half cosine over the remaining epochs (the
metric is ignored), the usual choice when the epoch budget is fixed in advance. ``one_cycle`` (Smith's
"super-convergence" policy, as ``torch.optim.lr_scheduler.OneCycleLR`` shapes it) is set before every
optimizer step from the share of training done: a cosine rise from ``lr / div_factor`` to ``lr`` over the
first ``pct_start`` of the steps, then a cosine fall to ``lr / (div_factor * final_div_factor)``. It suits
short runs, where a once-per-epoch schedule moves in a few coarse jumps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from alloy_mtl.config.registry import Registry

SCHEDULES: Registry[Any] = Registry("lr schedule", supplied=("optimizer", "settings"))


def _half_cosine(begin: float, finish: float, share: float) -> float:
    """From ``begin`` (share 0) to ``finish`` (share 1) along half a cosine."""
    return finish + (begin - finish) * 0.5 * (1.0 + math.cos(math.pi * share))


class _EpochLambda(torch.optim.lr_scheduler.LambdaLR):
    """A LambdaLR whose ``step`` accepts (and ignores) the monitored metric, like ReduceLROnPlateau's."""

    def step(self, metrics: float | None = None) -> None:  # type: ignore[override]
        """Advance one epoch."""
        super().step()


@SCHEDULES.register("reduce_on_plateau")
def _plateau(optimizer: torch.optim.Optimizer, settings: Any) -> Any:
    schedule = settings.lr_scheduler
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode=settings.monitor.mode,
        factor=schedule.factor,
        patience=schedule.patience,
        min_lr=schedule.min_lr,
    )


@SCHEDULES.register("cosine")
def _cosine(optimizer: torch.optim.Optimizer, settings: Any) -> Any:
    schedule, epochs = settings.lr_scheduler, settings.epochs
    warmup = min(schedule.warmup_epochs, max(epochs - 1, 0))
    floor = schedule.min_lr / settings.lr

    def factor(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        progress = (epoch - warmup) / max(epochs - warmup, 1)
        return _half_cosine(1.0, floor, min(progress, 1.0))

    return _EpochLambda(optimizer, factor)


class ProgressSchedule:
    """A schedule that the trainer sets before every optimizer step from the share of training done.

    Keeping no step counter makes it independent of the loader's length and exactly resumable: the
    learning rate is a function of (epoch, step in epoch, steps per epoch, planned epochs) alone.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[float], float]) -> None:
        self.optimizer = optimizer
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.factor = factor
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> None:
        """Set every group's learning rate for ``progress`` in [0, 1] of the planned training."""
        scale = self.factor(min(max(progress, 0.0), 1.0))
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * scale

    def rebase(self, lr: float) -> None:
        """Make ``lr`` the new peak of every group (Population Based Training changes the optimizer's lr)."""
        self.base_lrs = [float(lr)] * len(self.optimizer.param_groups)

    def step(self, metrics: float | None = None) -> None:
        """Epoch end: nothing to do, the trainer sets the rate before each step."""

    def state_dict(self) -> dict[str, Any]:
        """The peak learning rates (all the state there is)."""
        return {"base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the peak learning rates."""
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]


@SCHEDULES.register("one_cycle")
def _one_cycle(optimizer: torch.optim.Optimizer, settings: Any) -> ProgressSchedule:
    schedule = settings.lr_scheduler
    start = 1.0 / schedule.div_factor
    end = start / schedule.final_div_factor
    rise = schedule.pct_start  # in (0, 1), checked by LRScheduler

    def factor(progress: float) -> float:
        if progress < rise:
            return _half_cosine(start, 1.0, progress / rise)
        return _half_cosine(1.0, end, (progress - rise) / (1.0 - rise))

    return ProgressSchedule(optimizer, factor)


def build_schedule(optimizer: torch.optim.Optimizer, settings: Any) -> Any:
    """The schedule ``settings.lr_scheduler.name`` over ``optimizer`` (see :data:`SCHEDULES`)."""
    return SCHEDULES.build(settings.lr_scheduler.name, optimizer, settings)
