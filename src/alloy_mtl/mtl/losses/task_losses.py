"""Masked, imbalance-aware task losses.

Every ``TaskLoss`` returns the masked mean over the samples that carry the task's label. A sample whose
label is missing (mask False, classification target < 0, regression target NaN) contributes nothing; a
batch with no label gives exactly 0 and a zero (not NaN) gradient, because per-sample losses are
computed on placeholder targets and multiplied by a 0/1 presence weight.

Classification (priors from the train labels):
    * ``cross_entropy``: plain cross-entropy.
    * ``logit_adjusted``: Menon et al. 2021, loss form: CE(logits + tau * log prior). Predict with the raw
      logits. For a model trained with plain CE, ``adjusted_logits`` gives the post-hoc variant.
    * ``balanced_softmax``: Ren et al. 2020: CE(logits + log prior).
    * ``cb_focal``: Cui et al. 2019: class weights (1 - beta) / (1 - beta^n_c), normalised to sum K, times
      the softmax focal loss (1 - p_t)^gamma * (-log p_t).
Regression: ``mse``, ``l1``, ``huber``, optionally weighted per sample by LDS (``lds.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alloy_mtl.config.registry import Registry
from alloy_mtl.constants import CLASSIFICATION, REGRESSION
from alloy_mtl.mtl.losses.lds import LDSWeights, lds_weights

if TYPE_CHECKING:
    from alloy_mtl.mtl.tasks import TaskSpec

logger = logging.getLogger(__name__)


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts per class of integer labels; negative labels (missing) are ignored.

    Raises:
        ValueError: for a label >= ``num_classes``.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    labels = labels[labels >= 0]
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"labels: class index {int(labels.max())} out of range for {num_classes} classes")
    return np.bincount(labels, minlength=num_classes)


def class_log_prior(counts: np.ndarray) -> np.ndarray:
    """Log of the class frequencies; an absent class is counted once so its log prior stays finite."""
    counts = np.asarray(counts, dtype=np.float64)
    if np.any(counts == 0):
        logger.warning(
            "class prior: classes %s have no train sample; counted as 1", np.flatnonzero(counts == 0).tolist()
        )
    counts = np.maximum(counts, 1.0)
    return np.log(counts / counts.sum())


def class_balanced_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. 2019 weights (1 - beta) / (1 - beta^n_c), normalised to sum to the number of classes.

    Absent classes are counted once. ``beta = 0`` gives equal weights; beta -> 1 approaches inverse frequency.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta: expected 0 <= beta < 1, got {beta}")
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    weights = (1.0 - beta) / (1.0 - np.power(beta, n))
    return weights * len(n) / weights.sum()


def adjusted_logits(logits: Tensor, log_prior: Tensor, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021): ``logits - tau * log prior``; argmax to predict."""
    return logits - tau * log_prior.to(logits)


class TaskLoss(nn.Module):
    """Masked mean loss of one task: ``loss(pred, target, mask) -> scalar``.

    Subclasses implement ``per_sample(pred, target)`` for placeholder-filled targets and may override
    ``sample_weights``.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def present(self, target: Tensor, mask: Tensor | None) -> Tensor:
        """Bool (B,) of samples that carry the label."""
        raise NotImplementedError

    def placeholder(self, target: Tensor, present: Tensor) -> Tensor:
        """Target with missing entries replaced by a harmless valid value."""
        raise NotImplementedError

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """Unreduced loss (B,) for valid targets."""
        raise NotImplementedError

    def sample_weights(self, target: Tensor) -> Tensor | None:
        """Optional per-sample weights (B,) for valid targets."""
        return None

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Masked mean loss; exactly 0 with zero gradient when no sample has the label."""
        present = self.present(target, mask)
        safe = self.placeholder(target, present)
        weight = present.to(pred.dtype)
        extra = self.sample_weights(safe)
        if extra is not None:
            weight = weight * extra.to(pred.dtype)
        losses = self.per_sample(pred, safe)
        return (losses * weight).sum() / present.sum().clamp(min=1).to(pred.dtype)


class ClassificationLoss(TaskLoss):
    """Base of classification losses: targets are int64 class indices, -1 = missing.

    Args:
        name: task name.
        log_prior: (K,) log class frequencies of the train split (None: uniform).
        num_classes: K.
    """

    def __init__(self, name: str, num_classes: int, log_prior: np.ndarray | None = None) -> None:
        super().__init__(name)
        self.num_classes = num_classes
        prior = np.full(num_classes, -np.log(num_classes)) if log_prior is None else np.asarray(log_prior)
        if prior.shape != (num_classes,):
            raise ValueError(f"task '{name}': log prior has shape {prior.shape}, expected ({num_classes},)")
        self.register_buffer("log_prior", torch.tensor(prior, dtype=torch.float32))

    def present(self, target: Tensor, mask: Tensor | None) -> Tensor:
        """Samples with a class index >= 0 (and mask True)."""
        ok = target >= 0
        return ok if mask is None else ok & mask.bool()

    def placeholder(self, target: Tensor, present: Tensor) -> Tensor:
        """Class 0 in place of missing labels."""
        return torch.where(present, target, torch.zeros_like(target)).long()

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy per sample."""
        return F.cross_entropy(pred, target, reduction="none")

    def prediction_logits(self, logits: Tensor) -> Tensor:
        """Logits to take the argmax of at prediction time (the raw logits for every loss here)."""
        return logits


class CrossEntropyTaskLoss(ClassificationLoss):
    """Plain cross-entropy."""


class LogitAdjustedLoss(ClassificationLoss):
    """Logit-adjusted cross-entropy (Menon et al. 2021): CE(logits + tau * log prior)."""

    def __init__(self, name: str, num_classes: int, log_prior: np.ndarray, tau: float = 1.0) -> None:
        super().__init__(name, num_classes, log_prior)
        self.tau = tau

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """CE on prior-shifted logits."""
        return F.cross_entropy(pred + self.tau * self.log_prior.to(pred), target, reduction="none")


class BalancedSoftmaxLoss(ClassificationLoss):
    """Balanced softmax (Ren et al. 2020): CE(logits + log prior)."""

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """CE on prior-shifted logits."""
        return F.cross_entropy(pred + self.log_prior.to(pred), target, reduction="none")


class ClassBalancedFocalLoss(ClassificationLoss):
    """Class-balanced focal loss (Cui et al. 2019) with a softmax focal term.

    Per sample: ``w[y] * (1 - p_y)^gamma * (-log p_y)``, ``w`` from ``class_balanced_weights``.
    """

    def __init__(
        self, name: str, num_classes: int, counts: np.ndarray, beta: float = 0.999, gamma: float = 1.0
    ) -> None:
        super().__init__(name, num_classes, class_log_prior(counts))
        self.gamma = gamma
        self.beta = beta
        self.register_buffer(
            "class_weights", torch.tensor(class_balanced_weights(counts, beta), dtype=torch.float32)
        )

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """Weighted focal loss per sample."""
        log_p = F.log_softmax(pred, dim=-1).gather(-1, target[:, None]).squeeze(-1)
        loss = -log_p
        if self.gamma != 0:
            loss = loss * (1 - log_p.exp()).clamp(min=1e-12) ** self.gamma
        return loss * self.class_weights.to(pred)[target]


class RegressionLoss(TaskLoss):
    """MSE, L1 or Huber loss on float targets (NaN = missing), optionally LDS-weighted.

    Args:
        name: task name.
        kind: ``mse``, ``l1`` or ``huber``.
        delta: Huber threshold.
        lds: LDS bin weights in the units of the targets the loss receives.
    """

    def __init__(
        self, name: str, kind: str = "mse", delta: float = 1.0, lds: LDSWeights | None = None
    ) -> None:
        super().__init__(name)
        if kind not in ("mse", "l1", "huber"):
            raise ValueError(f"task '{name}', field 'loss': unknown regression loss {kind!r}")
        self.kind = kind
        self.delta = delta
        self.lds = lds
        if lds is not None:
            self.register_buffer("lds_inner_edges", torch.tensor(lds.edges[1:-1], dtype=torch.float32))
            self.register_buffer("lds_bin_weights", torch.tensor(lds.bin_weights, dtype=torch.float32))

    def present(self, target: Tensor, mask: Tensor | None) -> Tensor:
        """Samples with a finite target (and mask True)."""
        ok = torch.isfinite(target)
        return ok if mask is None else ok & mask.bool()

    def placeholder(self, target: Tensor, present: Tensor) -> Tensor:
        """0 in place of missing labels."""
        return torch.where(present, target, torch.zeros_like(target))

    def per_sample(self, pred: Tensor, target: Tensor) -> Tensor:
        """Unreduced regression loss."""
        target = target.to(pred.dtype)
        if self.kind == "mse":
            return (pred - target) ** 2
        if self.kind == "l1":
            return (pred - target).abs()
        return F.huber_loss(pred, target, reduction="none", delta=self.delta)

    def sample_weights(self, target: Tensor) -> Tensor | None:
        """LDS weight of each target's bin (None without LDS)."""
        if self.lds is None:
            return None
        edges = self.lds_inner_edges.to(target.device)
        idx = torch.bucketize(target.float().contiguous(), edges, right=True)
        return self.lds_bin_weights.to(target.device)[idx]


def _train_labels(task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None) -> np.ndarray:
    for key in (task.name, task.target):
        if train_targets is not None and key in train_targets:
            return np.asarray(train_targets[key])
    raise ValueError(
        f"task '{task.name}', field 'loss': loss {task.loss!r} needs the train labels, but train_targets "
        f"has neither '{task.name}' nor '{task.target}'"
    )


#: Loss name -> builder ``(task, train_targets, **loss_params)``; ``kind`` says which tasks may use it and
#: the builder's keyword parameters (with defaults) are the ``loss_params`` a configuration may set.
LOSSES: Registry[TaskLoss] = Registry("loss", supplied=("task", "train_targets"))


@LOSSES.register("cross_entropy", kind=CLASSIFICATION)
def _cross_entropy(task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None) -> TaskLoss:
    return CrossEntropyTaskLoss(task.name, task.num_outputs)


@LOSSES.register("logit_adjusted", kind=CLASSIFICATION)
def _logit_adjusted(
    task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None, tau: float = 1.0
) -> TaskLoss:
    counts = class_counts(_train_labels(task, train_targets), task.num_outputs)
    return LogitAdjustedLoss(task.name, task.num_outputs, class_log_prior(counts), tau=tau)


@LOSSES.register("balanced_softmax", kind=CLASSIFICATION)
def _balanced_softmax(task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None) -> TaskLoss:
    counts = class_counts(_train_labels(task, train_targets), task.num_outputs)
    return BalancedSoftmaxLoss(task.name, task.num_outputs, class_log_prior(counts))


@LOSSES.register("cb_focal", kind=CLASSIFICATION)
def _cb_focal(
    task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None, beta: float = 0.999, gamma: float = 1.0
) -> TaskLoss:
    counts = class_counts(_train_labels(task, train_targets), task.num_outputs)
    return ClassBalancedFocalLoss(task.name, task.num_outputs, counts, beta=beta, gamma=gamma)


def _lds(task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None) -> LDSWeights | None:
    if task.lds is None:
        return None
    return lds_weights(_train_labels(task, train_targets), task.lds)


@LOSSES.register("mse", kind=REGRESSION)
def _mse(task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None) -> TaskLoss:
    return RegressionLoss(task.name, "mse", lds=_lds(task, train_targets))


@LOSSES.register("l1", kind=REGRESSION)
def _l1(task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None) -> TaskLoss:
    return RegressionLoss(task.name, "l1", lds=_lds(task, train_targets))


@LOSSES.register("huber", kind=REGRESSION)
def _huber(task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None, delta: float = 1.0) -> TaskLoss:
    return RegressionLoss(task.name, "huber", delta=delta, lds=_lds(task, train_targets))


def build_task_loss(task: TaskSpec, train_targets: Mapping[str, np.ndarray] | None = None) -> TaskLoss:
    """The loss of one task (see :data:`LOSSES`); priors and LDS weights come from its train labels.

    ``train_targets`` is keyed by task name (or target column) and holds the train split's labels in the
    units the loss receives (class indices with -1 missing; standardised floats with NaN missing).
    """
    if task.loss not in LOSSES or LOSSES.info(task.loss)["kind"] != task.kind:
        raise ValueError(f"task '{task.name}', field 'loss': unknown {task.kind} loss {task.loss!r}")
    return LOSSES.build(task.loss, task, train_targets, **task.loss_params)


def build_task_losses(
    tasks: Sequence[TaskSpec], train_targets: Mapping[str, np.ndarray] | None = None
) -> dict[str, TaskLoss]:
    """One ``TaskLoss`` per task (see ``build_task_loss``)."""
    return {t.name: build_task_loss(t, train_targets) for t in tasks}


def masked_task_losses(
    losses: Mapping[str, TaskLoss],
    preds: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Masked mean loss of every task (unweighted), keyed by task name."""
    return {
        name: loss(preds[name], targets[name], None if masks is None else masks.get(name))
        for name, loss in losses.items()
    }


def weighted_total(task_losses: Mapping[str, Tensor], tasks: Sequence[TaskSpec]) -> Tensor:
    """Sum of task losses times the tasks' static weights."""
    if not tasks:
        raise ValueError("tasks: expected at least one task")
    return torch.stack([t.weight * task_losses[t.name] for t in tasks]).sum()
