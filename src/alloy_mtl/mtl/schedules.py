"""Learning-rate schedules by name, stepped once per epoch with the monitored metric.

``reduce_on_plateau`` is the reference study's schedule (the metric drives it); ``cosine`` warms up linearly
for ``warmup_epochs`` and then decays to ``min_lr`` along a half cosine over the remaining epochs (the
metric is ignored), the usual choice when the epoch budget is fixed in advance.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from alloy_mtl.config.registry import Registry

SCHEDULES: Registry[Any] = Registry("lr schedule", supplied=("optimizer", "settings"))


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
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return _EpochLambda(optimizer, factor)


def build_schedule(optimizer: torch.optim.Optimizer, settings: Any) -> Any:
    """The schedule ``settings.lr_scheduler.name`` over ``optimizer`` (see :data:`SCHEDULES`)."""
    return SCHEDULES.build(settings.lr_scheduler.name, optimizer, settings)
