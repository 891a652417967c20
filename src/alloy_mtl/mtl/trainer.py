"""Multi-task trainer: optimizer, gradient method, LR schedule, early stopping, checkpoints, resume.

Typical use::

    seed_everything(0)
    model = build_model(...)
    trainer = Trainer(
        model, tasks, build_task_losses(tasks, train_targets), params["trainer"], target_stats=stats
    )
    history = trainer.fit(train_loader, val_loader)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .callbacks import Callback, MetricTracker
from .checkpoint import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    capture_rng_state,
    check_fingerprint,
    load_checkpoint,
    model_signature,
    restore_rng_state,
    save_checkpoint,
)
from .device import autocast, configure_determinism, memory_format, resolve_device, to_device
from .fds import FDSCallback
from .gradients import EpochDiagnostics, GradientMethod, build_gradient_method
from .torch_data import loader_generators

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
CLASSIFICATION = "classification"


class TaskLike(Protocol):
    """What the trainer needs of a task spec (``alloy_mtl.mtl.tasks.TaskSpec`` fits)."""

    name: str
    kind: str
    weight: float


class MultiTaskModelLike(Protocol):
    """The model interface of the mtl contract."""

    def encode(self, x: Tensor) -> Tensor: ...
    def forward_heads(self, features: Tensor) -> dict[str, Tensor]: ...
    def shared_parameters(self) -> list[nn.Parameter]: ...
    def task_parameters(self, task: str) -> list[nn.Parameter]: ...


@dataclasses.dataclass
class TrainerConfig:
    """Trainer settings (Kedro parameters map onto the field names; see :meth:`from_params`).

    ``monitor`` is any history key (``val_loss``, ``val_alloy_acc``, ...), ``monitor_mode`` min or max.
    ``min_epochs``: early stopping never triggers before this epoch. ``progress`` None: tqdm decides (off
    when stderr is not a terminal). ``deterministic``: deterministic algorithms on CPU. ``run_identity``:
    what else a resumed checkpoint must match (data, hyperparameters); ``epochs`` is deliberately not part of
    it, so raising ``epochs`` continues a finished run.
    """

    epochs: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    gradient_method: str = "equal"
    gradient_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    monitor: str = "val_loss"
    monitor_mode: str = "min"
    lr_patience: int = 3
    lr_factor: float = 0.1
    min_lr: float = 0.0
    early_stopping: bool = True
    early_stopping_patience: int = 10
    min_epochs: int = 15
    min_delta: float = 0.0
    restore_best: bool = True
    checkpoint_dir: str | None = None
    resume: bool = False
    device: str = "auto"
    seed: int = 0
    deterministic: bool = True
    amp: bool = True
    channels_last: bool = True
    grad_clip_norm: float | None = None
    progress: bool | None = None
    progress_every: int = 10
    run_identity: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | TrainerConfig | None) -> TrainerConfig:
        """Build from a parameters mapping.

        Raises:
            ValueError: unknown key (listing the allowed ones) or invalid value, naming the field.
        """
        if isinstance(params, TrainerConfig):
            config = params
        else:
            params = dict(params or {})
            names = [f.name for f in dataclasses.fields(cls)]
            unknown = sorted(set(params) - set(names))
            if unknown:
                raise ValueError(f"trainer parameters: unknown key(s) {unknown}; allowed: {names}")
            config = cls(**params)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if self.optimizer.lower() not in OPTIMIZERS:
            raise ValueError(
                f"trainer parameters: optimizer {self.optimizer!r} unknown; expected one of {OPTIMIZERS}"
            )
        if self.monitor_mode not in ("min", "max"):
            raise ValueError(
                f"trainer parameters: monitor_mode must be 'min' or 'max', got {self.monitor_mode!r}"
            )
        checks = {
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "momentum": 0 <= self.momentum < 1,
            "lr_patience": self.lr_patience >= 0,
            "lr_factor": 0 < self.lr_factor < 1,
            "early_stopping_patience": self.early_stopping_patience >= 0,
            "min_epochs": self.min_epochs >= 0,
            "progress_every": self.progress_every >= 1,
            "grad_clip_norm": self.grad_clip_norm is None or self.grad_clip_norm > 0,
        }
        for field_name, ok in checks.items():
            if not ok:
                raise ValueError(f"trainer parameters: invalid {field_name}={getattr(self, field_name)!r}")


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def build_optimizer(
    name: str,
    model_params: Iterable[nn.Parameter],
    extra_params: Sequence[nn.Parameter] = (),
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Optimizer by name (adam, adamw, sgd with ``momentum``, rmsprop); ``extra_params`` get no weight decay."""
    groups: list[dict[str, Any]] = [{"params": list(model_params), "weight_decay": weight_decay}]
    if extra_params:
        groups.append({"params": list(extra_params), "weight_decay": 0.0})
    key = name.lower()
    if key == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if key == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if key == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr)
    raise ValueError(f"optimizer {name!r} unknown; expected one of {OPTIMIZERS}")


def _split_batch(batch: Any) -> tuple[Tensor, dict[str, Tensor] | None, dict[str, Tensor] | None]:
    if isinstance(batch, Tensor):
        return batch, None, None
    if isinstance(batch, (list, tuple)) and batch:
        targets = batch[1] if len(batch) > 1 else None
        masks = batch[2] if len(batch) > 2 else None
        return batch[0], targets, masks
    raise ValueError(f"batch: expected a tensor or (images, targets, masks), got {type(batch).__name__}")


class _EpochMeter:
    """Per-task sums kept as device tensors; one host sync when the epoch's metrics are read."""

    def __init__(self, tasks: Sequence[TaskLike], target_stats: Mapping[str, tuple[float, float]]) -> None:
        self.tasks = list(tasks)
        self.std = {t.name: float(target_stats.get(t.name, (0.0, 1.0))[1]) for t in self.tasks}
        self.sums: dict[str, Tensor] = {}

    def _add(self, key: str, value: Tensor) -> None:
        value = value.detach().double()
        self.sums[key] = value if key not in self.sums else self.sums[key] + value

    @torch.no_grad()
    def update(
        self,
        losses: Mapping[str, Tensor],
        outputs: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        masks: Mapping[str, Tensor],
        with_mae: bool,
    ) -> None:
        for task in self.tasks:
            name = task.name
            mask = masks[name]
            count = mask.sum()
            self._add(f"{name}_n", count)
            self._add(f"{name}_loss", losses[name].detach() * count)
            if task.kind == CLASSIFICATION:
                correct = (outputs[name].argmax(dim=1) == targets[name]) & mask
                self._add(f"{name}_correct", correct.sum())
            elif with_mae:
                error = (outputs[name].float().reshape(-1) - targets[name].float()).abs()
                self._add(f"{name}_abs", torch.where(mask, error, torch.zeros_like(error)).sum())

    def summary(self, prefix: str, weights: Mapping[str, float]) -> dict[str, float]:
        values = {k: float(v) for k, v in self.sums.items()}
        out: dict[str, float] = {}
        total = 0.0
        for task in self.tasks:
            name = task.name
            n = values.get(f"{name}_n", 0.0)
            loss = values.get(f"{name}_loss", 0.0) / n if n > 0 else math.nan
            out[f"{prefix}_{name}_loss"] = loss
            if n > 0:  # a task without labels adds nothing; a diverged one (NaN) shows in the total
                total += weights[name] * loss
            if task.kind == CLASSIFICATION:
                out[f"{prefix}_{name}_acc"] = values.get(f"{name}_correct", 0.0) / n if n > 0 else math.nan
            elif f"{name}_abs" in values:
                out[f"{prefix}_{name}_mae"] = (
                    values[f"{name}_abs"] * self.std[name] / n if n > 0 else math.nan
                )
        out[f"{prefix}_loss"] = total
        return out


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


def _raise_if_diverged(epoch: int, train_metrics: Mapping[str, float]) -> None:
    """Stop with a clear message instead of saving and predicting with NaN weights."""
    total = train_metrics["train_loss"]
    if not math.isfinite(total):
        bad = sorted(k for k, v in train_metrics.items() if k.endswith("_loss") and not math.isfinite(v))
        raise TrainingDivergedError(
            f"epoch {epoch}: training diverged, non-finite {bad}; lower the learning rate or set "
            "training.grad_clip_norm (the last good checkpoint is kept)"
        )


class Trainer:
    """Trains a multi-task model (contract interface) with a named gradient method.

    Args:
        model: ``encode`` / ``forward_heads`` / ``shared_parameters`` / ``task_parameters`` (mtl contract).
        tasks: task specs (``name``, ``kind``, ``weight``), e.g. from ``parse_tasks``.
        task_losses: ``{task: loss(pred, target, mask) -> scalar}`` (masked mean), e.g. ``build_task_losses``.
        config: :class:`TrainerConfig` or its parameters mapping.
        target_stats: ``{task: (mean, std)}`` of the standardised regression targets (MAE in original units;
            stored in checkpoints).
        callbacks: :class:`~alloy_mtl.mtl.callbacks.Callback` instances.

    Raises:
        ValueError: tasks and losses disagree, or model parameters are neither shared nor in a head.
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: Sequence[TaskLike],
        task_losses: Mapping[str, Callable[[Tensor, Tensor, Tensor], Tensor]],
        config: TrainerConfig | Mapping[str, Any] | None = None,
        *,
        target_stats: Mapping[str, tuple[float, float]] | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.config = TrainerConfig.from_params(config)
        self.tasks = list(tasks)
        self.task_names = [t.name for t in self.tasks]
        missing = [t for t in self.task_names if t not in task_losses]
        if missing:
            raise ValueError(
                f"Trainer: no loss for task(s) {missing}; losses given for {sorted(task_losses)}"
            )
        self.task_losses = dict(task_losses)
        self.target_stats = {k: (float(v[0]), float(v[1])) for k, v in (target_stats or {}).items()}
        self.callbacks = list(callbacks)
        self.device = resolve_device(self.config.device)
        self.memory_format = memory_format(self.device, self.config.channels_last)
        self.model = model.to(self.device, memory_format=self.memory_format)
        for loss in self.task_losses.values():
            if isinstance(loss, nn.Module):
                loss.to(self.device)
        fds_modules = getattr(model, "fds", None)
        self.uses_fds = isinstance(fds_modules, nn.ModuleDict) and len(fds_modules) > 0
        if self.uses_fds and not any(isinstance(c, FDSCallback) for c in self.callbacks):
            self.callbacks.append(FDSCallback(model))

        self.shared_params = [p for p in model.shared_parameters() if p.requires_grad]
        self.head_params = {
            t: [p for p in model.task_parameters(t) if p.requires_grad] for t in self.task_names
        }
        self._check_parameter_coverage()

        gradient_params = {
            "task_weights": {t.name: float(t.weight) for t in self.tasks},
            "task_kinds": {t.name: t.kind for t in self.tasks},
            "seed": self.config.seed,
            **self.config.gradient_params,
        }
        self.method: GradientMethod = build_gradient_method(
            self.config.gradient_method, self.task_names, gradient_params
        ).to(self.device)
        self.optimizer = build_optimizer(
            self.config.optimizer,
            [p for p in model.parameters() if p.requires_grad],
            self.method.parameters(),
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
            momentum=self.config.momentum,
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode=self.config.monitor_mode,
            factor=self.config.lr_factor,
            patience=self.config.lr_patience,
            min_lr=self.config.min_lr,
        )
        self.tracker = MetricTracker(
            mode=self.config.monitor_mode,
            patience=self.config.early_stopping_patience,
            min_epochs=self.config.min_epochs,
            min_delta=self.config.min_delta,
        )
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.stopped = False
        self.best_state: dict[str, Tensor] | None = None
        self._static_weights = {t.name: float(t.weight) for t in self.tasks}

    # ------------------------------------------------------------------ setup helpers
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
            "optimizer": self.config.optimizer.lower(),
            **{f"run.{key}": value for key, value in self.config.run_identity.items()},
        }

    @property
    def checkpoint_dir(self) -> Path | None:
        """Folder of ``last.pt`` / ``best.pt`` (None: no checkpoints)."""
        return None if self.config.checkpoint_dir is None else Path(self.config.checkpoint_dir)

    @property
    def lr(self) -> float:
        """Current learning rate of the model parameters."""
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ state
    def state_dict(self, generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
        """Everything needed to resume: weights, optimizer, scheduler, method, early stopping, history, RNG."""
        return {
            "fingerprint": self.fingerprint(),
            "epoch": self.epoch,
            "stopped": self.stopped,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "gradient_method": self.method.state_dict(),
            "tracker": self.tracker.state_dict(),
            "history": [dict(row) for row in self.history],
            "target_stats": {k: list(v) for k, v in self.target_stats.items()},
            "rng": capture_rng_state(generators),
        }

    def load_state_dict(self, state: Mapping[str, Any], generators: Sequence[torch.Generator] = ()) -> None:
        """Restore :meth:`state_dict` output (after a fingerprint check)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["gradient_method"])
        self.tracker.load_state_dict(state["tracker"])
        self.history = [dict(row) for row in state["history"]]
        self.epoch = int(state["epoch"])
        self.stopped = bool(state["stopped"])
        if state.get("target_stats"):
            self.target_stats = {k: (float(v[0]), float(v[1])) for k, v in state["target_stats"].items()}
        restore_rng_state(state["rng"], generators)

    def _resume(self, generators: Sequence[torch.Generator]) -> bool:
        directory = self.checkpoint_dir
        if directory is None:
            raise ValueError("Trainer: resume=True needs checkpoint_dir")
        last = directory / LAST_CHECKPOINT
        if not last.is_file():
            logger.info("resume requested but %s does not exist; starting from scratch", last)
            return False
        state = load_checkpoint(last)
        check_fingerprint(state["fingerprint"], self.fingerprint(), last)
        self.load_state_dict(state, generators)
        best = directory / BEST_CHECKPOINT
        if self.config.restore_best and best.is_file():
            self.best_state = load_checkpoint(best)["model"]
        logger.info("resumed from %s at epoch %d", last, self.epoch)
        return True

    def _save(self, improved: bool, generators: Sequence[torch.Generator]) -> None:
        directory = self.checkpoint_dir
        if directory is None:
            return
        state = self.state_dict(generators)
        save_checkpoint(state, directory / LAST_CHECKPOINT)
        if improved:
            save_checkpoint(state, directory / BEST_CHECKPOINT)

    # ------------------------------------------------------------------ training
    def fit(self, train_loader: DataLoader, val_loader: DataLoader | None = None) -> pd.DataFrame:
        """Train for ``config.epochs`` epochs (or until early stopping) and return the history.

        With ``resume=True`` and a ``last.pt`` in ``checkpoint_dir``, training continues where it stopped
        and ends as an uninterrupted run would (CPU, same data and seed).

        Raises:
            CheckpointMismatchError: the checkpoint to resume was written by another configuration.
            ValueError: ``monitor`` is not among the epoch metrics.
        """
        if val_loader is None and self.config.monitor.startswith("val_"):
            raise ValueError(
                f"Trainer: monitor {self.config.monitor!r} needs a val_loader; pass one or monitor a train_ metric"
            )
        configure_determinism(self.device, self.config.deterministic)
        generators = loader_generators(train_loader)
        if val_loader is not None:
            generators += [g for g in loader_generators(val_loader) if all(g is not h for h in generators)]
        resumed = self.config.resume and self._resume(generators)
        if not resumed:
            seed_everything(self.config.seed)
            if self.checkpoint_dir is not None and (self.checkpoint_dir / LAST_CHECKPOINT).is_file():
                logger.warning("overwriting checkpoints in %s (resume=False)", self.checkpoint_dir)
        for callback in self.callbacks:
            callback.on_train_begin(self)

        while not self.stopped and self.epoch < self.config.epochs:
            epoch = self.epoch + 1
            start = time.perf_counter()
            lr = self.lr
            metrics: dict[str, float] = {"epoch": float(epoch), "lr": lr}
            train_metrics, diagnostics = self._train_epoch(train_loader, epoch)
            _raise_if_diverged(epoch, train_metrics)
            metrics.update(train_metrics)
            if val_loader is not None:
                metrics.update(self.evaluate(val_loader))
            metrics.update(diagnostics)
            metrics["epoch_time_s"] = time.perf_counter() - start

            if self.config.monitor not in metrics:
                raise ValueError(
                    f"Trainer: monitor {self.config.monitor!r} is not an epoch metric; available: {sorted(metrics)}"
                )
            monitored = metrics[self.config.monitor]
            self.scheduler.step(monitored)
            improved = self.tracker.update(epoch, monitored)
            self.history.append(metrics)
            self.epoch = epoch
            self.stopped = self.config.early_stopping and self.tracker.should_stop(epoch)
            # callbacks may change state (e.g. FDS statistics): run them before the state is saved
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, dict(metrics))
            if improved and self.config.restore_best:
                self.best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()
                }
            self._save(improved, generators)
            if self.stopped:
                logger.info(
                    "early stopping at epoch %d (best %s=%.5g at epoch %d)",
                    epoch,
                    self.config.monitor,
                    self.tracker.best,
                    self.tracker.best_epoch,
                )

        if self.config.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        history = self.history_frame()
        for callback in self.callbacks:
            callback.on_train_end(self, history)
        return history

    def history_frame(self) -> pd.DataFrame:
        """The history as a DataFrame (one row per epoch, ``epoch`` as int)."""
        frame = pd.DataFrame(self.history)
        if not frame.empty:
            frame["epoch"] = frame["epoch"].astype(int)
        return frame

    def _forward(
        self, images: Tensor, targets: Mapping[str, Tensor] | None = None, epoch: int | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        with autocast(self.device, self.config.amp):
            features = self.model.encode(images)
            if self.uses_fds and targets is not None:
                outputs = self.model.forward_heads(features, targets=targets, epoch=epoch)
            else:
                outputs = self.model.forward_heads(features)
        return features, {k: v.float() for k, v in outputs.items()}

    def _losses(
        self, outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], masks: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        return {t: self.task_losses[t](outputs[t], targets[t], masks[t]) for t in self.task_names}

    def _to_device(self, batch: Any) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        images, targets, masks = _split_batch(batch)
        if targets is None or masks is None:
            raise ValueError("Trainer: training batches must be (images, targets, masks)")
        images = to_device(images, self.device).to(memory_format=self.memory_format)
        return images, to_device(targets, self.device), to_device(masks, self.device)

    def _train_epoch(self, loader: DataLoader, epoch: int) -> tuple[dict[str, float], dict[str, float]]:
        self.model.train()
        meter = _EpochMeter(self.tasks, self.target_stats)
        diagnostics = EpochDiagnostics(self.task_names)
        all_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        disable = None if self.config.progress is None else not self.config.progress
        bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=disable)
        for step, batch in enumerate(bar):
            images, targets, masks = self._to_device(batch)
            features, outputs = self._forward(images, targets, epoch)
            losses = self._losses(outputs, targets, masks)
            self.optimizer.zero_grad(set_to_none=True)
            info = self.method.backward(losses, self.shared_params, features, self.head_params)
            if self.config.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(all_params, self.config.grad_clip_norm)
            self.optimizer.step()
            diagnostics.update(info)
            meter.update(losses, outputs, targets, masks, with_mae=False)
            if not bar.disable and step % self.config.progress_every == 0:
                bar.set_postfix({t: f"{float(v):.3f}" for t, v in losses.items()})
        bar.close()
        return meter.summary("train", self._static_weights), diagnostics.summary()

    @torch.inference_mode()
    def evaluate(self, loader: DataLoader, prefix: str = "val") -> dict[str, float]:
        """Masked losses, accuracy (classification) and MAE in original units (regression) over ``loader``."""
        self.model.eval()
        meter = _EpochMeter(self.tasks, self.target_stats)
        for batch in loader:
            images, targets, masks = self._to_device(batch)
            _, outputs = self._forward(images)
            losses = self._losses(outputs, targets, masks)
            meter.update(losses, outputs, targets, masks, with_mae=True)
        return meter.summary(prefix, self._static_weights)


@torch.inference_mode()
def predict(
    model: nn.Module,
    loader: DataLoader,
    target_stats: Mapping[str, tuple[float, float]] | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
) -> dict[str, np.ndarray]:
    """Run ``model`` over ``loader`` and collect numpy arrays.

    Classification tasks (outputs (B, K)): ``<task>_logits``, ``<task>_probs`` (softmax), ``<task>_pred``
    (class index). Regression tasks (outputs (B,)): ``<task>_pred`` in original units (``target_stats``
    undone). When batches carry targets and masks: ``<task>_target`` (original units; -1 / NaN where missing)
    and ``<task>_mask``.
    """
    stats = dict(target_stats or {})
    device = next(model.parameters()).device if device is None else resolve_device(device)
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {}

    def add(key: str, value: Tensor) -> None:
        chunks.setdefault(key, []).append(value.detach().cpu().numpy())

    for batch in loader:
        images, targets, masks = _split_batch(batch)
        with autocast(device, amp):
            outputs = model(to_device(images, device))
        for task, raw_output in outputs.items():
            output = raw_output.float()
            mean, std = stats.get(task, (0.0, 1.0))
            if output.ndim == 2:
                add(f"{task}_logits", output)
                add(f"{task}_probs", torch.softmax(output, dim=1))
                add(f"{task}_pred", output.argmax(dim=1))
            else:
                add(f"{task}_pred", output.reshape(-1) * std + mean)
            if targets is not None and task in targets:
                target = targets[task]
                add(f"{task}_target", target if output.ndim == 2 else target.float() * std + mean)
            if masks is not None and task in masks:
                add(f"{task}_mask", masks[task])
    return {key: np.concatenate(parts) for key, parts in chunks.items()}
