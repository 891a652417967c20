"""Training under torch DDP: one replica per ``torchrun`` process, every gradient method kept exact.

Plain DDP averages the gradients of *one* backward pass. That is all equal weighting, uncertainty weighting
and GradNorm need (GradNorm also averages the loss values and gradient norms it derives its weights from).
Gradient surgery (PCGrad, the torchjd aggregators) needs every rank's *per-task* gradients: the forward runs
under ``no_sync()``, the method averages its stacked per-task gradients (or torchjd's Jacobians) over the
ranks before it projects or aggregates (``GradientMethod.sync``), and the heads' own gradients are averaged
after it. PCGrad draws its task order from a generator seeded identically on every rank. Together the
replicas take bit-identical steps; without it they drift apart silently.

Epoch metrics are summed over the ranks before they are read, so divergence checks, the LR schedule and
early stopping see the same numbers everywhere and all ranks stop together (rank 0's decision is broadcast
as well, and its clock decides a time budget). Rank 0 alone logs, shows progress and writes checkpoints
(:func:`~alloy_mtl.mtl.parallel.process_group.is_main_process`); ``trainer.model`` stays the bare model, so
checkpoints hold the replica's weights and resume in either mode.

Typical use (one rank of ``torchrun``)::

    context = setup_distributed("auto", settings.device)
    trainer = Trainer(model, tasks, losses, settings, strategy=DDPStrategy(context))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from alloy_mtl.constants import CLASSIFICATION
from alloy_mtl.mtl.models.dropout import dropout_seed
from alloy_mtl.mtl.parallel.process_group import DistributedContext
from alloy_mtl.mtl.parallel.strategy import DataParallelStrategy
from alloy_mtl.mtl.training.callbacks import Callback

if TYPE_CHECKING:
    from alloy_mtl.mtl.gradients import GradientMethod
    from alloy_mtl.mtl.trainer_settings import TrainerSettings
    from alloy_mtl.mtl.training.meter import EpochMeter
    from alloy_mtl.mtl.training.trainer import Trainer


class DDPStrategy(DataParallelStrategy):
    """One rank of a ``torchrun`` job (see the module note).

    Args:
        context: this rank's :class:`DistributedContext` (from :func:`setup_distributed`).
        find_unused_parameters: passed to DDP, for models whose forward skips parameters.
    """

    def __init__(self, context: DistributedContext, *, find_unused_parameters: bool = False) -> None:
        self.context = context
        self.find_unused_parameters = find_unused_parameters
        self.sync_batchnorm = False
        self.ddp: DistributedDataParallel | None = None

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return self.context.world_size

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.context.is_main

    def configure(self, settings: TrainerSettings) -> TrainerSettings:
        """This rank's device; progress shown on rank 0 only; SyncBatchNorm on CUDA only (it is CUDA-only).

        Raises:
            ValueError: ``ema`` enabled (each rank's BatchNorm statistics differ within an epoch, so would
                their averages).
        """
        if settings.ema.enabled:
            raise ValueError(
                "DDPStrategy: training.ema is not supported data-parallel; set ema.enabled: false"
            )
        updates: dict[str, Any] = {"device": str(self.context.device)}
        if not self.context.is_main:
            updates["progress_bar"] = False
        self.sync_batchnorm = self.context.device.type == "cuda" and settings.sync_batchnorm
        return settings.model_copy(update=updates)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """``model`` with SyncBatchNorm layers where :meth:`configure` chose them."""
        return nn.SyncBatchNorm.convert_sync_batchnorm(model) if self.sync_batchnorm else model

    def prepare_method(self, method: GradientMethod) -> None:
        """Average the method's per-task gradients over the ranks (``method.sync``).

        Raises:
            ValueError: a method that cannot run data-parallel (``pcgrad_fast``).
        """
        if not method.supports_distributed:
            raise ValueError(
                f"gradient method {method.name!r} cannot run data-parallel; use 'pcgrad' (exact) or another"
            )
        method.sync = self.context
        if self.sync_batchnorm:
            method.avoid_vmap()

    def callbacks(self) -> list[Callback]:
        """Reseeds the random draws of ranks above 0."""
        return [_RankSeed(self.context.rank)]

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in :class:`DistributedDataParallel` (which gives every rank rank 0's weights now)."""
        device = self.context.device
        self.ddp = DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=self.find_unused_parameters,
        )
        return self.ddp

    def no_sync(self) -> AbstractContextManager[object]:
        """DDP's ``no_sync``: the backward of a forward run inside it averages nothing."""
        if self.ddp is None:
            raise RuntimeError("DDPStrategy.no_sync: wrap a module first")
        return self.ddp.no_sync()

    def average_gradients(self, params: Sequence[Tensor]) -> None:
        """One all-reduce of every ``.grad`` of ``params``."""
        self.context.average_([p.grad for p in params if p.grad is not None])

    def reduce_metrics(self, meter: EpochMeter) -> None:
        """Sums added over the ranks, classification scores gathered (see :func:`reduce_epoch_meter`)."""
        reduce_epoch_meter(meter, self.context)

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers win: each rank's last forward (or precise BN) saw its own batches. DDP broadcasts
        them before each training forward only; on CUDA SyncBatchNorm already makes them global."""
        broadcast_buffers(model)

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag``."""
        return self.context.broadcast_flag(flag)

    def set_epoch(self, loader: Iterable[object], epoch: int) -> None:
        """``set_epoch`` of the loader's sampler and of its batch sampler's (the per-rank shards)."""
        batch_sampler = getattr(loader, "batch_sampler", None)
        for sampler in (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)

    def barrier(self) -> None:
        """Wait for every rank (so a checkpoint to resume is complete on disk)."""
        self.context.barrier()


def _metric_keys(meter: EpochMeter) -> list[str]:
    keys = []
    for task in meter.tasks:
        extra = "correct" if task.kind == CLASSIFICATION else "abs"
        keys += [f"{task.name}_n", f"{task.name}_loss", f"{task.name}_{extra}"]
    return keys


def reduce_epoch_meter(meter: EpochMeter, context: DistributedContext) -> None:
    """Turn one rank's epoch sums into the whole (sharded) split's, in place.

    Every rank reduces the same fixed vector (per task: count, loss sum, correct or absolute-error sum, and a
    presence flag), so a rank with no batch of a split takes part like the others; the classification
    scores behind the macro AP are gathered from every rank, so the AP is the whole split's too.
    """
    keys = _metric_keys(meter)
    zero = torch.zeros((), dtype=torch.float64, device=context.device)
    values = [meter.sums.get(key, zero).to(context.device, torch.float64) for key in keys]
    present = [
        torch.tensor(float(key in meter.sums), dtype=torch.float64, device=zero.device) for key in keys
    ]
    total = context.sum_(torch.stack(values + present))
    count = len(keys)
    meter.sums = {key: total[i] for i, key in enumerate(keys) if float(total[count + i]) > 0}
    for task in meter.tasks:
        if task.kind != CLASSIFICATION:
            continue
        batches = meter.scores.get(task.name, [])
        local = None
        if batches:
            local = (torch.cat([p for p, _ in batches]), torch.cat([y for _, y in batches]))
        gathered: list[Any] = [None] * context.world_size
        torch.distributed.all_gather_object(gathered, local)
        merged = [pair for pair in gathered if pair is not None]
        if merged:
            meter.scores[task.name] = merged
        else:
            meter.scores.pop(task.name, None)


class _RankSeed(Callback):
    """Ranks above 0 draw other dropout masks than rank 0, which ``fit`` (and a resumed checkpoint, rank 0's
    state) seeded alike. Runs after the checkpoint callback at the start (lower order)."""

    order = 50

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.rank > 0:
            seed = trainer.settings.seed + 1_000_003 * self.rank + trainer.epoch
            torch.manual_seed(seed)
            trainer.dropout_generator.manual_seed(dropout_seed(seed))


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics)."""
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer.data, src=0)


def replicas_max_difference(model: nn.Module, context: DistributedContext) -> float:
    """Largest absolute difference of any parameter or buffer between this rank and rank 0 (0.0: identical).

    Every rank must call it (it broadcasts rank 0's state).
    """
    worst = torch.zeros((), dtype=torch.float64, device=context.device)
    for tensor in [*model.parameters(), *model.buffers()]:
        reference = tensor.detach().clone()
        torch.distributed.broadcast(reference, src=0)
        if tensor.is_floating_point():
            difference = (tensor.detach().double() - reference.double()).abs().max()
        else:
            difference = (tensor.detach() != reference).any().double()
        worst = torch.maximum(worst, difference)
    torch.distributed.all_reduce(worst, op=torch.distributed.ReduceOp.MAX)
    value = float(worst)
    return value if math.isfinite(value) else math.inf
