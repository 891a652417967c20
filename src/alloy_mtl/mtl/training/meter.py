"""What the trainer needs of a task (a protocol) and its per-epoch metrics: sums and divergence."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import Tensor

from alloy_mtl.constants import CLASSIFICATION


class TaskLike(Protocol):
    """What the trainer needs of a task spec (``alloy_mtl.mtl.tasks.TaskSpec`` fits)."""

    name: str
    kind: str
    weight: float


class EpochMeter:
    """Per-task sums kept as device tensors; one host sync when the epoch's metrics are read.

    Args:
        tasks: the tasks.
        target_std: ``{task: std}`` of the standardised regression targets (MAE in original units).
    """

    def __init__(self, tasks: Sequence[TaskLike], target_std: Mapping[str, float]) -> None:
        self.tasks = list(tasks)
        self.std = {t.name: float(target_std.get(t.name, 1.0)) for t in self.tasks}
        self.sums: dict[str, Tensor] = {}
        self.scores: dict[str, list[tuple[Tensor, Tensor]]] = {}

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
        """Add one batch (``with_mae``: evaluation, which adds MAE and the classification AP)."""
        for task in self.tasks:
            name = task.name
            mask = masks[name]
            count = mask.sum()
            self._add(f"{name}_n", count)
            self._add(f"{name}_loss", losses[name].detach() * count)
            if task.kind == CLASSIFICATION:
                correct = (outputs[name].argmax(dim=1) == targets[name]) & mask
                self._add(f"{name}_correct", correct.sum())
                if with_mae:
                    probabilities = torch.softmax(outputs[name].float(), dim=1)
                    self.scores.setdefault(name, []).append(
                        (probabilities[mask].cpu(), targets[name][mask].cpu())
                    )
            elif with_mae:
                error = (outputs[name].float().reshape(-1) - targets[name].float()).abs()
                self._add(f"{name}_abs", torch.where(mask, error, torch.zeros_like(error)).sum())

    def summary(self, prefix: str, weights: Mapping[str, float]) -> dict[str, float]:
        """``<prefix>_<task>_loss|acc|mae|ap`` and the weighted ``<prefix>_loss``.

        ``ap`` is the macro one-vs-rest average precision over the classes present (evaluation only): on
        long-tailed data it ranks checkpoints by every class, where the loss and the accuracy follow the head.
        """
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
                if name in self.scores:
                    out[f"{prefix}_{name}_ap"] = macro_average_precision(self.scores[name])
            elif f"{name}_abs" in values:
                out[f"{prefix}_{name}_mae"] = (
                    values[f"{name}_abs"] * self.std[name] / n if n > 0 else math.nan
                )
        out[f"{prefix}_loss"] = total
        return out


def macro_average_precision(batches: Sequence[tuple[Tensor, Tensor]]) -> float:
    """Macro one-vs-rest average precision of ``(probabilities, labels)`` batches over the classes present."""
    if not batches:
        return math.nan
    probabilities = torch.cat([p for p, _ in batches]).numpy()
    labels = torch.cat([y for _, y in batches]).numpy()
    present = [c for c in range(probabilities.shape[1]) if (labels == c).any()]
    if not present:
        return math.nan
    return float(np.mean([average_precision_score(labels == c, probabilities[:, c]) for c in present]))


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


CPU_BF16_HINT = (
    "; this run autocasts to bf16 on a CPU (training.amp: true), where torch's bf16 convolution backward can "
    "return non-finite weight gradients at random (torch 2.14.1: a stride-2 convolution on a 1x1 feature map, "
    "e.g. resnet18's layer4 at 16 px), so set training.amp: false first"
)
"""Added to the divergence message of a CPU bf16 run: a kernel fault, not the learning rate, may be the cause."""


def raise_if_diverged(epoch: int, train_metrics: Mapping[str, float], cpu_bf16: bool = False) -> None:
    """Stop with a clear message instead of saving and predicting with NaN weights (``cpu_bf16``: the run
    autocasts to bf16 on a CPU, named as a likely cause)."""
    if not math.isfinite(train_metrics["train_loss"]):
        bad = sorted(k for k, v in train_metrics.items() if k.endswith("_loss") and not math.isfinite(v))
        raise TrainingDivergedError(
            f"epoch {epoch}: training diverged, non-finite {bad}; lower the learning rate or set "
            "training.grad_clip_norm (the last good checkpoint is kept)" + (CPU_BF16_HINT if cpu_bf16 else "")
        )
