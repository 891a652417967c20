"""The trainer under torch DDP: one replica per ``torchrun`` process, every gradient method kept exact.

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
(:func:`~alloy_mtl.mtl.parallel.process_group.is_main_process`); ``trainer.model`` stays the bare model, so checkpoints
hold ``ddp.module``'s weights and resume in either mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from alloy_mtl.config.base import parse_params
from alloy_mtl.constants import CLASSIFICATION
from alloy_mtl.mtl.device import autocast
from alloy_mtl.mtl.gradients import GradientMethod, StepInfo
from alloy_mtl.mtl.models.dropout import dropout_seed
from alloy_mtl.mtl.parallel.process_group import DistributedContext
from alloy_mtl.mtl.params import TrainerSettings
from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.mtl.training.meter import EpochMeter, TaskLike
from alloy_mtl.mtl.training.trainer import Trainer


class _EncodeAndHeads(nn.Module):
    """``forward`` = encode + heads, so DDP sees the whole training forward of the mtl contract model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: Tensor, targets: Mapping[str, Tensor] | None = None, epoch: int | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        features = self.model.encode(images)
        return features, self.model.forward_heads(features, targets=targets, epoch=epoch)


class SyncedEpochMeter(EpochMeter):
    """Epoch sums added over the ranks before they are read: metrics of the whole (sharded) split.

    Every rank reduces the same fixed vector (per task: count, loss sum, correct or absolute-error sum, and a
    presence flag), so a rank with no batch of a split takes part like the others; the classification
    scores behind the macro AP are gathered from every rank, so the AP is the whole split's too.
    """

    def __init__(
        self, tasks: Sequence[TaskLike], target_std: Mapping[str, float], context: DistributedContext
    ) -> None:
        super().__init__(tasks, target_std)
        self.context = context

    def _keys(self) -> list[str]:
        keys = []
        for task in self.tasks:
            extra = "correct" if task.kind == CLASSIFICATION else "abs"
            keys += [f"{task.name}_n", f"{task.name}_loss", f"{task.name}_{extra}"]
        return keys

    def summary(self, prefix: str, weights: Mapping[str, float]) -> dict[str, float]:
        """The whole split's ``<prefix>_<task>_loss|acc|mae`` and the weighted ``<prefix>_loss``."""
        keys = self._keys()
        zero = torch.zeros((), dtype=torch.float64, device=self.context.device)
        values = [self.sums.get(key, zero).to(self.context.device, torch.float64) for key in keys]
        present = [
            torch.tensor(float(key in self.sums), dtype=torch.float64, device=zero.device) for key in keys
        ]
        total = self.context.sum_(torch.stack(values + present))
        count = len(keys)
        self.sums = {key: total[i] for i, key in enumerate(keys) if float(total[count + i]) > 0}
        self._gather_scores()
        return super().summary(prefix, weights)

    def _gather_scores(self) -> None:
        """Every rank's (probabilities, labels) of the classification tasks, for the whole split's AP."""
        for task in self.tasks:
            if task.kind != CLASSIFICATION:
                continue
            batches = self.scores.get(task.name, [])
            local = None
            if batches:
                local = (torch.cat([p for p, _ in batches]), torch.cat([y for _, y in batches]))
            gathered: list[Any] = [None] * self.context.world_size
            torch.distributed.all_gather_object(gathered, local)
            merged = [pair for pair in gathered if pair is not None]
            if merged:
                self.scores[task.name] = merged
            else:
                self.scores.pop(task.name, None)


class _DistributedMethod:
    """A gradient method whose gradients end up averaged over the ranks.

    Methods with one backward pass run it through DDP (which averages); per-task methods average inside
    (``method.sync``) and their heads' gradients here. The method's own learnable parameters (uncertainty
    weighting's log-variances) live outside DDP and are averaged here too.
    """

    def __init__(
        self, method: GradientMethod, context: DistributedContext, head_params: Mapping[str, Sequence[Tensor]]
    ) -> None:
        if not method.supports_distributed:
            raise ValueError(
                f"gradient method {method.name!r} cannot run data-parallel; use 'pcgrad' (exact) or another"
            )
        method.sync = context
        self.inner = method
        self.context = context
        self.head_params = [p for params in head_params.values() for p in params]

    @property
    def per_task_backward(self) -> bool:
        """True when the method takes per-task gradients (so the forward runs under ``no_sync``)."""
        return self.inner.computes_task_gradients

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared_params: Sequence[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None = None,
    ) -> StepInfo:
        """The inner method's backward, then the averages DDP did not do."""
        info = self.inner.backward(losses, shared_params, features, task_params)
        local = list(self.inner.parameters())
        if self.per_task_backward:
            local += self.head_params
        self.context.average_([p.grad for p in local if p.grad is not None])
        return info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


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


class DistributedTrainer(Trainer):
    """:class:`Trainer` for one rank of a ``torchrun`` job (see the module note); the other arguments are the
    :class:`Trainer`'s.

    Args:
        context: this rank's :class:`DistributedContext` (from :func:`setup_distributed`).
        find_unused_parameters: passed to DDP, for models whose forward skips parameters.

    Raises:
        ValueError: a gradient method that cannot run data-parallel (``pcgrad_fast``).
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: Sequence[TaskLike],
        task_losses: Mapping[str, Callable[[Tensor, Tensor, Tensor], Tensor]],
        settings: TrainerSettings | Mapping[str, Any] | None = None,
        *,
        context: DistributedContext,
        callbacks: Sequence[Callback] = (),
        find_unused_parameters: bool = False,
    ) -> None:
        settings = parse_params(TrainerSettings, settings, "training")
        if settings.ema.enabled:
            # each rank's BatchNorm statistics differ within an epoch, so would their averages
            raise ValueError(
                "DistributedTrainer: training.ema is not supported data-parallel; set ema.enabled: false"
            )
        updates: dict[str, Any] = {"device": str(context.device)}
        if not context.is_main:
            updates["progress_bar"] = False
        # SyncBatchNorm is CUDA-only
        sync_batchnorm = context.device.type == "cuda" and settings.sync_batchnorm
        if sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        callbacks = [_RankSeed(context.rank), *callbacks]
        super().__init__(model, tasks, task_losses, settings.model_copy(update=updates), callbacks=callbacks)
        if sync_batchnorm:
            self.method.avoid_vmap()
        self.context = context
        self.ddp = DistributedDataParallel(
            _EncodeAndHeads(self.model),
            device_ids=[context.device.index] if context.device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters,
        )
        self.method = _DistributedMethod(self.method, context, self.head_params)  # type: ignore[assignment]

    def fit(self, train_loader: DataLoader, val_loader: DataLoader | None = None) -> pd.DataFrame:
        """:meth:`Trainer.fit` once every rank is here (a checkpoint to resume is complete on disk)."""
        self.context.barrier()
        return super().fit(train_loader, val_loader)

    def _new_meter(self) -> EpochMeter:
        return SyncedEpochMeter(self.tasks, self.target_std, self.context)

    def _budget_spent(self, started: float) -> bool:
        return self.context.broadcast_flag(super()._budget_spent(started))

    def _forward(
        self,
        images: Tensor,
        targets: Mapping[str, Tensor] | None = None,
        epoch: int | None = None,
        model: nn.Module | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if model is not None or not self.model.training:
            return super()._forward(images, targets, epoch, model)
        with autocast(self.device, self.settings.amp):
            if self.method.per_task_backward:
                with self.ddp.no_sync():
                    features, outputs = self.ddp(images, targets, epoch)
            else:
                features, outputs = self.ddp(images, targets, epoch)
        return features, {k: v.float() for k, v in outputs.items()}

    def _train_epoch(self, loader: DataLoader, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        for sampler in (getattr(loader, "sampler", None), getattr(loader.batch_sampler, "sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
        result = super()._train_epoch(loader, epoch)
        # DDP broadcasts buffers before each forward, so the last forward's local BatchNorm statistics
        # would differ between ranks (on CUDA SyncBatchNorm already makes them global): rank 0's win
        _broadcast_buffers(self.model)
        return result

    def _recompute_batchnorm(self, loader: DataLoader) -> None:
        super()._recompute_batchnorm(loader)
        _broadcast_buffers(self.evaluated_model)  # each rank saw its own batches: rank 0's win

    def _run_epoch(self, train_loader: DataLoader, val_loader: DataLoader | None) -> None:
        super()._run_epoch(train_loader, val_loader)
        self.stopped = self.context.broadcast_flag(self.stopped)


def _broadcast_buffers(model: nn.Module) -> None:
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
