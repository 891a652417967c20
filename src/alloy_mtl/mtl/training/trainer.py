"""The multi-task training loop: gradient method, LR schedule, early stopping, callbacks.

Typical use::

    seed_everything(0)
    model = build_model(...)
    trainer = Trainer(model, tasks, build_task_losses(tasks, train_targets), settings)
    history = trainer.fit(train_loader, val_loader)

Settings are :class:`~alloy_mtl.mtl.params.TrainerSettings` (or a mapping parsed into them); checkpoints
are a callback (:class:`~alloy_mtl.mtl.training.checkpoint_callback.CheckpointCallback`); prediction lives in
:mod:`alloy_mtl.mtl.training.predict`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
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
    to_device,
)
from alloy_mtl.mtl.gradients import EpochDiagnostics, GradientMethod, build_gradient_method
from alloy_mtl.mtl.loading.datasets import loader_generators
from alloy_mtl.mtl.models.dropout import attach_generator, dropout_seed
from alloy_mtl.mtl.optim.optimizers import build_optimizer, rebuild_optimizer
from alloy_mtl.mtl.optim.schedules import ProgressSchedule, build_schedule
from alloy_mtl.mtl.optim.weight_averaging import recompute_batchnorm_statistics, weight_average
from alloy_mtl.mtl.params import TrainerSettings
from alloy_mtl.mtl.training.callbacks import Callback, MetricTracker
from alloy_mtl.mtl.training.checkpoint_io import capture_rng_state, model_signature, restore_rng_state
from alloy_mtl.mtl.training.meter import EpochMeter, TaskLike, raise_if_diverged
from alloy_mtl.mtl.training.predict import split_batch

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

    Raises:
        ValueError: tasks and losses disagree, or model parameters are neither shared nor in a head.
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
    ) -> None:
        self.settings = parse_params(TrainerSettings, settings, "training")
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
        self.model = model.to(self.device, memory_format=self.memory_format)
        # the model's dropout draws from a generator of its own (alloy_mtl.mtl.models.dropout), seeded in fit
        self.dropout_generator = torch.Generator(device=self.device)
        attach_generator(self.model, self.dropout_generator)
        for loss in self.task_losses.values():
            if isinstance(loss, nn.Module):
                loss.to(self.device)
        model_callbacks = getattr(model, "training_callbacks", list)()
        self.callbacks: list[Callback] = [*model_callbacks, *callbacks]

        self.shared_params = [p for p in model.shared_parameters() if p.requires_grad]
        self.head_params = {
            t: [p for p in model.task_parameters(t) if p.requires_grad] for t in self.task_names
        }
        self._check_parameter_coverage()

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

    def _check_parameter_coverage(self) -> None:
        covered = {id(p) for p in self.shared_params}
        for params in self.head_params.values():
            covered.update(id(p) for p in params)
        orphans = [n for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in covered]
        if orphans:
            raise ValueError(
                f"Trainer: parameters neither in shared_parameters() nor in a task head: {orphans[:5]}"
                f"{' ...' if len(orphans) > 5 else ''}"
            )

    def fingerprint(self) -> dict[str, Any]:
        """Identity of the training configuration that a resumed checkpoint must match."""
        return {
            "model": model_signature(self.model),
            "tasks": [[t.name, t.kind, str(getattr(t, "num_outputs", ""))] for t in self.tasks],
            "gradient_method": self.method.name,
            "optimizer": self.settings.optimizer,
            "dropout_rng": "model",  # checkpoints from before the model's own dropout generator differ
            **({"ema": True} if self.ema is not None else {}),
        }

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
        self.optimizer = rebuild_optimizer(
            self.optimizer,
            optimizer,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            fused=self.settings.fused_optimizer,
        )
        self.scheduler.optimizer = self.optimizer
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        if isinstance(self.scheduler, ProgressSchedule):
            self.scheduler.rebase(lr)
        self.settings = self.settings.model_copy(
            update={
                "optimizer": optimizer.lower(),
                "lr": lr,
                "weight_decay": weight_decay,
                "momentum": momentum,
            }
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimizer, scheduler, method, early stopping, history, RNG."""
        return {
            "epoch": self.epoch,
            "stopped": self.stopped,
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "gradient_method": self.method.state_dict(),
            "tracker": self.tracker.state_dict(),
            "history": [dict(row) for row in self.history],
            "rng": capture_rng_state(self.generators),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (after a fingerprint check)."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["gradient_method"])
        self.tracker.load_state_dict(state["tracker"])
        self.history = [dict(row) for row in state["history"]]
        self.epoch = int(state["epoch"])
        self.stopped = bool(state["stopped"])
        restore_rng_state(state["rng"], self.generators)

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
        """True when ``time_budget_s`` has run out (data-parallel ranks follow rank 0's clock)."""
        return time.perf_counter() - started >= float(self.settings.time_budget_s or 0.0)

    def _new_meter(self) -> EpochMeter:
        """The epoch's metric sums (data-parallel ranks sum theirs before reading them)."""
        return EpochMeter(self.tasks, self.target_std)

    def _run_epoch(self, train_loader: DataLoader, val_loader: DataLoader | None) -> None:
        epoch = self.epoch + 1
        start = time.perf_counter()
        if isinstance(self.scheduler, ProgressSchedule):
            self.scheduler.set_progress((epoch - 1) / self.settings.epochs)
        metrics: dict[str, float] = {"epoch": float(epoch), "lr": self.lr}
        train_metrics, diagnostics = self._train_epoch(train_loader, epoch)
        raise_if_diverged(epoch, train_metrics)
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
        for (
            callback
        ) in self._ordered_callbacks():  # before the best weights are copied: callbacks may change state
            callback.on_epoch_end(self, epoch, dict(metrics))
        if improved and self.settings.restore_best:
            self.best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in self.evaluated_model.state_dict().items()
            }
        if self.stopped:
            logger.info(
                "early stopping at epoch %d (best %s=%.5g at epoch %d)",
                epoch,
                monitor,
                self.tracker.best,
                self.tracker.best_epoch,
            )

    def history_frame(self) -> pd.DataFrame:
        """The history as a DataFrame (one row per epoch, ``epoch`` as int)."""
        frame = pd.DataFrame(self.history)
        if not frame.empty:
            frame["epoch"] = frame["epoch"].astype(int)
        return frame

    def _to_device(self, batch: Any) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        images, targets, masks = split_batch(batch)
        if targets is None or masks is None:
            raise ValueError("Trainer: training batches must be (images, targets, masks)")
        images = to_device(images, self.device).to(memory_format=self.memory_format)
        return images, to_device(targets, self.device), to_device(masks, self.device)

    def _recompute_batchnorm(self, loader: DataLoader) -> None:
        """Precise BatchNorm statistics of :attr:`evaluated_model` from the first training batches."""
        model = self.evaluated_model

        def forward(batch: Any) -> None:
            images, _, _ = self._to_device(batch)
            self._forward(images, model=model)

        recompute_batchnorm_statistics(model, loader, forward, self.settings.precise_bn.batches)

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights that are validated, selected and delivered: the moving average when ``ema`` is on."""
        return self.model if self.ema is None else self.ema.module

    def _forward(
        self,
        images: Tensor,
        targets: Mapping[str, Tensor] | None = None,
        epoch: int | None = None,
        model: nn.Module | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        model = self.model if model is None else model
        with autocast(self.device, self.settings.amp):
            features = model.encode(images)
            outputs = model.forward_heads(features, targets=targets, epoch=epoch)
        return features, {k: v.float() for k, v in outputs.items()}

    def _losses(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], masks: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        return {t: self.task_losses[t](outputs[t], targets[t], masks[t]) for t in self.task_names}

    def _train_epoch(self, loader: DataLoader, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        self.model.train()
        meter = self._new_meter()
        diagnostics = EpochDiagnostics(self.task_names)
        all_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        show = self.settings.show_progress
        label = f"{self.label} " if self.label else ""
        bar = tqdm(
            loader, desc=f"{label}epoch {epoch}", leave=False, disable=None if show is None else not show
        )
        per_step = isinstance(self.scheduler, ProgressSchedule)
        steps = len(loader) if per_step or self.ema is not None else 0
        for step, batch in enumerate(bar):
            if per_step:
                self.scheduler.set_progress((epoch - 1 + step / steps) / self.settings.epochs)
            images, targets, masks = self._to_device(batch)
            features, outputs = self._forward(images, targets, epoch)
            losses = self._losses(outputs, targets, masks)
            self.optimizer.zero_grad(set_to_none=True)
            info = self.method.backward(losses, self.shared_params, features, self.head_params)
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
        return meter.summary("train", self._static_weights), diagnostics.summary()

    @torch.inference_mode()
    def evaluate(self, loader: DataLoader, prefix: str = "val") -> dict[str, float]:
        """Masked losses, accuracy (classification) and MAE in original units (regression) over ``loader``,
        of :attr:`evaluated_model`."""
        model = self.evaluated_model
        model.eval()
        meter = self._new_meter()
        for batch in loader:
            images, targets, masks = self._to_device(batch)
            _, outputs = self._forward(images, model=model)
            losses = self._losses(outputs, targets, masks)
            meter.update(losses, outputs, targets, masks, with_mae=True)
        return meter.summary(prefix, self._static_weights)
