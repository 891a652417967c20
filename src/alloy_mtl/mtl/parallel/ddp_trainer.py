"""``DistributedTrainer``, as it was called before data parallelism became a strategy of the one
:class:`~alloy_mtl.mtl.training.trainer.Trainer`: a :class:`Trainer` with a
:class:`~alloy_mtl.mtl.parallel.ddp.DDPStrategy`. New code passes the strategy itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from alloy_mtl.mtl.parallel.ddp import DDPStrategy, replicas_max_difference
from alloy_mtl.mtl.parallel.process_group import DistributedContext
from alloy_mtl.mtl.trainer_settings import TrainerSettings
from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.mtl.training.meter import TaskLike
from alloy_mtl.mtl.training.trainer import Trainer

__all__ = ["DistributedTrainer", "replicas_max_difference"]


def DistributedTrainer(
    model: nn.Module,
    tasks: Sequence[TaskLike],
    task_losses: Mapping[str, Callable[[Tensor, Tensor, Tensor], Tensor]],
    settings: TrainerSettings | Mapping[str, Any] | None = None,
    *,
    context: DistributedContext,
    callbacks: Sequence[Callback] = (),
    find_unused_parameters: bool = False,
) -> Trainer:
    """A :class:`Trainer` for one rank of a ``torchrun`` job.

    Raises:
        ValueError: settings or a gradient method that cannot run data-parallel (``ema``, ``pcgrad_fast``).
    """
    strategy = DDPStrategy(context, find_unused_parameters=find_unused_parameters)
    return Trainer(model, tasks, task_losses, settings, callbacks=callbacks, strategy=strategy)
