"""The seam between the training loop and data parallelism: what a :class:`DataParallelStrategy` must do.

The :class:`~alloy_mtl.mtl.training.trainer.Trainer` takes one strategy and calls it at fixed points; nothing
else of the trainer knows whether it runs alone or as one rank of many.

While the trainer is built:
    ``configure(settings)`` returns the settings this rank trains with (or refuses them);
    ``prepare_model(model)`` returns the model before it moves to the device;
    ``prepare_method(method)`` hands the gradient method what averages its per-task gradients or Jacobians
    (its ``sync``), or refuses a method that cannot run this way;
    ``callbacks()`` are put before the caller's; ``wrap(module)`` returns what the training forward runs
    through (``module`` is encode + heads of the model).
In :meth:`~alloy_mtl.mtl.training.trainer.Trainer.fit`:
    ``barrier()`` first; every epoch ``set_epoch(loader, epoch)`` before its batches; every step the training
    forward runs inside ``no_sync()`` when the method takes per-task gradients, and after the method's
    backward ``average_gradients(params)`` gets the parameters whose gradients the wrapped forward's
    backward did not average (the method's own, and the heads' after per-task backward passes);
    ``reduce_metrics(meter)`` before a train or validation meter is read; ``broadcast_buffers(model)`` after
    the epoch's steps and after precise BatchNorm; ``broadcast_flag(flag)`` for the decisions every rank must
    take together (time budget spent, training stops).

:class:`SingleDevice` does nothing at any of them: one process trains as it always did. The torchrun
strategy is :class:`alloy_mtl.mtl.parallel.ddp.DDPStrategy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from torch import Tensor, nn

from alloy_mtl.mtl.parallel.process_group import is_main_process

if TYPE_CHECKING:
    from alloy_mtl.mtl.gradients import GradientMethod
    from alloy_mtl.mtl.trainer_settings import TrainerSettings
    from alloy_mtl.mtl.training.callbacks import Callback
    from alloy_mtl.mtl.training.meter import EpochMeter


class DataParallelStrategy(ABC):
    """What the trainer asks of data parallelism (see the module note for when it asks)."""

    @property
    @abstractmethod
    def world_size(self) -> int:
        """Number of processes training together."""

    @property
    @abstractmethod
    def is_main(self) -> bool:
        """True for the process that logs and writes files."""

    @abstractmethod
    def configure(self, settings: TrainerSettings) -> TrainerSettings:
        """The settings this process trains with.

        Raises:
            ValueError: a setting this strategy cannot honour.
        """

    @abstractmethod
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model to train, before it moves to the device."""

    @abstractmethod
    def prepare_method(self, method: GradientMethod) -> None:
        """Give the gradient method its ``sync`` (what averages per-task gradients over the processes).

        Raises:
            ValueError: a method that cannot run under this strategy.
        """

    @abstractmethod
    def callbacks(self) -> list[Callback]:
        """Callbacks the strategy needs, run before the caller's."""

    @abstractmethod
    def wrap(self, module: nn.Module) -> nn.Module:
        """What the training forward runs through; ``module(images, targets, epoch)`` gives
        ``(features, outputs)``."""

    @abstractmethod
    def no_sync(self) -> AbstractContextManager[object]:
        """Context of a training forward whose gradients the method computes (and averages) itself."""

    @abstractmethod
    def average_gradients(self, params: Sequence[Tensor]) -> None:
        """Average the ``.grad`` of ``params`` over the processes, in place (parameters without one skipped)."""

    @abstractmethod
    def reduce_metrics(self, meter: EpochMeter) -> None:
        """Turn this process's epoch sums into the whole split's, in place, before they are read."""

    @abstractmethod
    def broadcast_buffers(self, model: nn.Module) -> None:
        """Give every process the main process's buffers (BatchNorm statistics)."""

    @abstractmethod
    def broadcast_flag(self, flag: bool) -> bool:
        """The main process's ``flag`` (a decision every process must take together)."""

    @abstractmethod
    def set_epoch(self, loader: Iterable[object], epoch: int) -> None:
        """Tell ``loader``'s per-process sampler which epoch starts (its shuffle depends on it)."""

    @abstractmethod
    def barrier(self) -> None:
        """Wait until every process gets here."""


class SingleDevice(DataParallelStrategy):
    """One process, one device: every hook leaves things as they are."""

    @property
    def world_size(self) -> int:
        """1."""
        return 1

    @property
    def is_main(self) -> bool:
        """True unless torchrun started this process as another rank (each then trains alone)."""
        return is_main_process()

    def configure(self, settings: TrainerSettings) -> TrainerSettings:
        """``settings`` unchanged."""
        return settings

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """``model`` unchanged."""
        return model

    def prepare_method(self, method: GradientMethod) -> None:
        """Nothing: the method has nothing to average."""

    def callbacks(self) -> list[Callback]:
        """None."""
        return []

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` itself."""
        return module

    def no_sync(self) -> AbstractContextManager[object]:
        """A context that does nothing."""
        return nullcontext()

    def average_gradients(self, params: Sequence[Tensor]) -> None:
        """Nothing: the mean over one process is its own value."""

    def reduce_metrics(self, meter: EpochMeter) -> None:
        """Nothing: the sums are the whole split's."""

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Nothing."""

    def broadcast_flag(self, flag: bool) -> bool:
        """``flag``."""
        return bool(flag)

    def set_epoch(self, loader: Iterable[object], epoch: int) -> None:
        """Nothing: a single process's loader reshuffles by itself."""

    def barrier(self) -> None:
        """Nothing."""
