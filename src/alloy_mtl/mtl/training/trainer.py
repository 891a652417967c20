"""The multi-task training loop: gradient method, LR schedule, early stopping, callbacks.

Typical use::

    seed_everything(0)
    model = build_model(...)
    trainer = Trainer(model, tasks, build_task_losses(tasks, train_targets), settings)
    history = trainer.fit(train_loader, val_loader)

Settings are :class:`~alloy_mtl.mtl.params.TrainerSettings` (or a mapping parsed into them); checkpoints
are a callback (:class:`~alloy_mtl.mtl.training.checkpoint_callback.CheckpointCallback`); prediction lives in
:mod:`alloy_mtl.mtl.training.predict`; data-parallel training is a strategy the trainer calls
(:mod:`alloy_mtl.mtl.parallel.strategy`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from alloy_mtl.config.base import parse_params
from alloy_mtl.mtl.device import (
    GLOBAL_RNG_LOCK,
    autocast,
    autocasts,
    configure_denormals,
    configure_determinism,
    memory_format,
    resolve_device,
    seed_everything,
)
from alloy_mtl.mtl.gradients import EpochDiagnostics, GradientMethod, build_gradient_method
from alloy_mtl.mtl.loading.datasets import loader_generators
from alloy_mtl.mtl.models.dropout import attach_generator, dropout_seed
from alloy_mtl.mtl.optim.optimizers import build_optimizer, rebuild_optimizer
from alloy_mtl.mtl.optim.schedules import ProgressSchedule, build_schedule
from alloy_mtl.mtl.optim.weight_averaging import recompute_batchnorm_statistics, weight_average
from alloy_mtl.mtl.parallel.strategy import DataParallelStrategy, SingleDevice
from alloy_mtl.mtl.trainer_settings import TrainerSettings
from alloy_mtl.mtl.training.callbacks import Callback, MetricTracker
from alloy_mtl.mtl.training.forward import EncodeAndHeads, split_parameters, training_batch
from alloy_mtl.mtl.training.meter import EpochMeter, TaskLike, raise_if_diverged
from alloy_mtl.mtl.training.trainer_state import restore_trainer_state, trainer_fingerprint, trainer_state

logger = logging.getLogger(__name__)


class Trainer:
    """Trains a multi-task model (contract interface) with a named gradient method.

    Args:
        model: ``encode`` / ``forward_heads`` / ``shared_parameters`` / ``task_parameters`` (mtl contract);
            an optional ``target_scaler`` gives MAE in original units, an optional ``training_callbacks()``
            adds the callbacks the model needs (FDS).
        tasks: task specs (``name``, ``kind``, ``weight``), e.g. from ``parse_tasks``.
        task_losses: ``{task: loss(pred, target, mask) -> scalar}`` (masked mean), e.g. ``build_task_losses``.
        settings: :class:`TrainerSettings` or a mapping of its YAML keys.
        callbacks: :class:`~alloy_mtl.mtl.training.callbacks.Callback` instances.
        strategy: how the processes train together (:mod:`alloy_mtl.mtl.parallel.strategy`; it is called
            at fixed points of the loop); :class:`SingleDevice` by default.

    Raises:
        ValueError: tasks and losses disagree, model parameters are neither shared nor in a head, or the
            strategy refuses the settings or the gradient method.
        alloy_mtl.config.ParameterError: invalid settings.
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: Sequence[TaskLike],
        task_losses: Mapping[str, Callable[[Tensor, Tensor, Tensor], Tensor]],
        settings: TrainerSettings | Mapping[str, Any] | None = None,
        *,
        callbacks: Sequence[Callback] = (),
        strategy: DataParallelStrategy | None = None,
    ) -> None:
        self.strategy = SingleDevice() if strategy is None else strategy
        self.settings = self.strategy.configure(parse_params(TrainerSettings, settings, "training"))
        self.tasks = list(tasks)
        self.task_names = [t.name for t in self.tasks]
        missing = [t for t in self.task_names if t not in task_losses]
        if missing:
            raise ValueError(
                f"Trainer: no loss for task(s) {missing}; losses given for {sorted(task_losses)}"
            )
        self.task_losses = dict(task_losses)
        self.device = resolve_device(self.settings.device)
        self.memory_format = memory_format(self.device, self.settings.channels_last)
        model = self.strategy.prepare_model(model)
        self.model = model.to(self.device, memory_format=self.memory_format)
        # the model's dropout draws from a generator of its own (alloy_mtl.mtl.models.dropout), seeded in fit
        self.dropout_generator = torch.Generator(device=self.device)
        attach_generator(self.model, self.dropout_generator)
        for loss in self.task_losses.values():
            if isinstance(loss, nn.Module):
                loss.to(self.device)
        model_callbacks = getattr(model, "training_callbacks", list)()
        self.callbacks: list[Callback] = [*model_callbacks, *self.strategy.callbacks(), *callbacks]
        self.shared_params, self.head_params = split_parameters(model, self.task_names)

        method = self.settings.gradient_method
        self.method: GradientMethod = build_gradient_method(
            method.name,
            self.task_names,
            {
                "task_weights": {t.name: float(t.weight) for t in self.tasks},
                "task_kinds": {t.name: t.kind for t in self.tasks},
                "seed": self.settings.seed,
                **method.options,
            },
        ).to(self.device)
        if autocasts(self.device, self.settings.amp):
            self.method.avoid_vmap()
        self.strategy.prepare_method(self.method)
        self.optimizer = build_optimizer(
            self.settings.optimizer,
            [p for p in model.parameters() if p.requires_grad],
            self.method.parameters(),
            lr=self.settings.lr,
            weight_decay=self.settings.weight_decay,
            momentum=self.settings.momentum,
            fused=self.settings.fused_optimizer,
        )
        self.scheduler = build_schedule(self.optimizer, self.settings)
        self.ema = weight_average(self.model, self.settings.ema)
        stopping = self.settings.early_stopping
        self.tracker = MetricTracker(
            mode=self.settings.monitor.mode,
            patience=stopping.patience,
            min_epochs=stopping.min_epochs,
            min_delta=stopping.min_delta,
        )
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.stopped = False
        self.best_state: dict[str, Tensor] | None = None
        self.generators: list[torch.Generator] = []
        self.label = ""
        """Names the model in the progress bar (several may train at once)."""
        self._static_weights = {t.name: float(t.weight) for t in self.tasks}
        # gradients that the training forward's backward does not average over the processes: the method's
        # own parameters, and the heads' when the method runs per-task backward passes under no_sync
        heads = [p for params in self.head_params.values() for p in params]
        per_task = self.method.computes_task_gradients
        self.unsynced_params = [*self.method.parameters(), *(heads if per_task else [])]
        self.train_module = self.strategy.wrap(EncodeAndHeads(self.model))
        """What the training forward runs through (the strategy's wrapping of encode + heads)."""
        self.eval_module = EncodeAndHeads(self.evaluated_model)

    def fingerprint(self) -> dict[str, Any]:
        """Identity of the training configuration that a resumed checkpoint must match."""
        return trainer_fingerprint(self)

    @property
    def lr(self) -> float:
        """Current learning rate of the model parameters."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def target_std(self) -> dict[str, float]:
        """Standard deviation of each standardised regression target (from the model's ``target_scaler``)."""
        scaler = getattr(self.model, "target_scaler", None)
        return {} if scaler is None else {task: std for task, (_, std) in scaler.stats().items()}

    def reconfigure_optimizer(
        self, optimizer: str, *, lr: float, weight_decay: float, momentum: float | None = None
    ) -> None:
        """Change optimizer kind, learning rate and weight decay mid-run (Population Based Training).

        The model and the LR schedule's state (plateau counter, best value) carry over; the optimizer keeps
        its moments when its kind stays and starts afresh when it changes.
        """
        momentum = self.settings.momentum if momentum is None else momentum
        fused = self.settings.fused_optimizer
        self.optimizer = rebuild_optimizer(
            self.optimizer, optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum, fused=fused
        )
        self.scheduler.optimizer = self.optimizer
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        if isinstance(self.scheduler, ProgressSchedule):
            self.scheduler.rebase(lr)
        update = {
            "optimizer": optimizer.lower(),
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
        }
        self.settings = self.settings.model_copy(update=update)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimizer, scheduler, method, early stopping, history, RNG."""
        return trainer_state(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (after a fingerprint check)."""
        restore_trainer_state(self, state)

    def _ordered_callbacks(self, starting: bool = False) -> list[Callback]:
        return sorted(
            self.callbacks, key=lambda c: -getattr(c, "order", 0) if starting else getattr(c, "order", 0)
        )

    def fit(self, train_loader: DataLoader, val_loader: DataLoader | None = None) -> pd.DataFrame:
        """Train for ``epochs`` epochs (or until early stopping) and return the history.

        With a resuming :class:`~alloy_mtl.mtl.training.checkpoint_callback.CheckpointCallback`, training continues where it
        stopped and ends as an uninterrupted run would (CPU, same data and seed).

        Raises:
            CheckpointMismatchError: the checkpoint to resume was written by another configuration.
            ValueError: ``monitor`` is not among the epoch metrics.
        """
        monitor = self.settings.monitor.metric
        if val_loader is None and monitor.startswith("val_"):
            raise ValueError(
                f"Trainer: monitor {monitor!r} needs a val_loader; pass one or monitor a train_ metric"
            )
        self.strategy.barrier()  # a checkpoint to resume is complete on disk for every process
        configure_determinism(self.device, self.settings.deterministic)
        configure_denormals(self.device, self.settings.flush_denormal)
        self.generators = loader_generators(train_loader)
        if val_loader is not None:
            self.generators += [
                g for g in loader_generators(val_loader) if all(g is not h for h in self.generators)
            ]
        with GLOBAL_RNG_LOCK:
            seed_everything(self.settings.seed)
        self.dropout_generator.manual_seed(dropout_seed(self.settings.seed))
        self.generators.append(self.dropout_generator)
        for callback in self._ordered_callbacks(starting=True):
            callback.on_train_begin(self)

        started = time.perf_counter()
        budget = self.settings.time_budget_s
        while not self.stopped and self.epoch < self.settings.epochs:
            self._run_epoch(train_loader, val_loader)
            if budget is not None and self._budget_spent(started) and self.epoch < self.settings.epochs:
                # a time budget ties the epoch count to the machine: same seed, other speed, other result
                logger.info("time budget of %.0f s spent after epoch %d; training stops", budget, self.epoch)
                break

        if self.settings.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
        history = self.history_frame()
        for callback in self._ordered_callbacks():
            callback.on_train_end(self, history)
        return history

    def _budget_spent(self, started: float) -> bool:
        """True when ``time_budget_s`` has run out (data-parallel processes follow the main one's clock)."""
        spent = time.perf_counter() - started >= float(self.settings.time_budget_s or 0.0)
        return self.strategy.broadcast_flag(spent)

    def _run_epoch(self, train_loader: DataLoader, val_loader: DataLoader | None) -> None:
        epoch = self.epoch + 1
        start = time.perf_counter()
        if isinstance(self.scheduler, ProgressSchedule):
            self.scheduler.set_progress((epoch - 1) / self.settings.epochs)
        metrics: dict[str, float] = {"epoch": float(epoch), "lr": self.lr}
        train_metrics, diagnostics = self._train_epoch(train_loader, epoch)
        raise_if_diverged(
            epoch,
            train_metrics,
            cpu_bf16=self.device.type == "cpu" and autocasts(self.device, self.settings.amp),
        )
        metrics.update(train_metrics)
        if self.settings.precise_bn.enabled:
            self._recompute_batchnorm(train_loader)
        if val_loader is not None:
            metrics.update(self.evaluate(val_loader))
        metrics.update(diagnostics)
        metrics["epoch_time_s"] = time.perf_counter() - start

        monitor = self.settings.monitor.metric
        if monitor not in metrics:
            raise ValueError(
                f"Trainer: monitor {monitor!r} is not an epoch metric; available: {sorted(metrics)}"
            )
        self.scheduler.step(metrics[monitor])
        improved = self.tracker.update(epoch, metrics[monitor])
        self.history.append(metrics)
        self.epoch = epoch
        self.stopped = self.settings.early_stopping.enabled and self.tracker.should_stop(epoch)
        # before the best weights are copied: callbacks may change state
        for callback in self._ordered_callbacks():
            callback.on_epoch_end(self, epoch, dict(metrics))
        if improved and self.settings.restore_best:
            self.best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in self.evaluated_model.state_dict().items()
            }
        if self.stopped:
            best = (self.tracker.best, self.tracker.best_epoch)
            logger.info("early stopping at epoch %d (best %s=%.5g at epoch %d)", epoch, monitor, *best)
        self.stopped = self.strategy.broadcast_flag(self.stopped)

    def history_frame(self) -> pd.DataFrame:
        """The history as a DataFrame (one row per epoch, ``epoch`` as int)."""
        frame = pd.DataFrame(self.history)
        if not frame.empty:
            frame["epoch"] = frame["epoch"].astype(int)
        return frame

    def _recompute_batchnorm(self, loader: DataLoader) -> None:
        """Precise BatchNorm statistics of :attr:`evaluated_model` from the first training batches."""
        model = self.evaluated_model

        def forward(batch: Any) -> None:
            images, _, _ = training_batch(batch, self.device, self.memory_format)
            self._forward(self.eval_module, images)

        recompute_batchnorm_statistics(model, loader, forward, self.settings.precise_bn.batches)
        self.strategy.broadcast_buffers(model)  # each process saw its own batches

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights that are validated, selected and delivered: the moving average when ``ema`` is on."""
        return self.model if self.ema is None else self.ema.module

    def _forward(
        self,
        module: nn.Module,
        images: Tensor,
        targets: Mapping[str, Tensor] | None = None,
        epoch: int | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``module`` is :attr:`train_module` or :attr:`eval_module`."""
        with autocast(self.device, self.settings.amp):
            features, outputs = module(images, targets, epoch)
        return features, {k: v.float() for k, v in outputs.items()}

    def _losses(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], masks: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        return {t: self.task_losses[t](outputs[t], targets[t], masks[t]) for t in self.task_names}

    def _train_epoch(self, loader: DataLoader, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        self.strategy.set_epoch(loader, epoch)
        self.model.train()
        meter = EpochMeter(self.tasks, self.target_std)
        diagnostics = EpochDiagnostics(self.task_names)
        all_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        show = self.settings.show_progress
        label = f"{self.label} " if self.label else ""
        bar = tqdm(
            loader, desc=f"{label}epoch {epoch}", leave=False, disable=None if show is None else not show
        )
        per_step = isinstance(self.scheduler, ProgressSchedule)
        steps = len(loader) if per_step or self.ema is not None else 0
        # a method that computes (and averages) its per-task gradients itself runs the forward unsynced
        no_sync = self.strategy.no_sync if self.method.computes_task_gradients else nullcontext
        for step, batch in enumerate(bar):
            if per_step:
                self.scheduler.set_progress((epoch - 1 + step / steps) / self.settings.epochs)
            images, targets, masks = training_batch(batch, self.device, self.memory_format)
            with no_sync():
                features, outputs = self._forward(self.train_module, images, targets, epoch)
            losses = self._losses(outputs, targets, masks)
            self.optimizer.zero_grad(set_to_none=True)
            info = self.method.backward(losses, self.shared_params, features, self.head_params)
            self.strategy.average_gradients(self.unsynced_params)
            if self.settings.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(all_params, self.settings.grad_clip_norm)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model, step=(epoch - 1) * steps + step + 1)
            diagnostics.update(info)
            meter.update(losses, outputs, targets, masks, with_mae=False)
            if not bar.disable and step % self.settings.progress_every == 0:
                bar.set_postfix({t: f"{float(v):.3f}" for t, v in losses.items()})
        bar.close()
        # the training forward syncs buffers before it runs: the last one's BatchNorm statistics are local
        self.strategy.broadcast_buffers(self.model)
        self.strategy.reduce_metrics(meter)
        return meter.summary("train", self._static_weights), diagnostics.summary()

    @torch.inference_mode()
    def evaluate(self, loader: DataLoader, prefix: str = "val") -> dict[str, float]:
        """Masked losses, accuracy (classification) and MAE in original units (regression) over ``loader``,
        of :attr:`evaluated_model`."""
        self.evaluated_model.eval()
        meter = EpochMeter(self.tasks, self.target_std)
        for batch in loader:
            images, targets, masks = training_batch(batch, self.device, self.memory_format)
            _, outputs = self._forward(self.eval_module, images)
            losses = self._losses(outputs, targets, masks)
            meter.update(losses, outputs, targets, masks, with_mae=True)
        self.strategy.reduce_metrics(meter)
        return meter.summary(prefix, self._static_weights)
