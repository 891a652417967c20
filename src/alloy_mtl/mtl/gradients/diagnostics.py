"""Per-epoch aggregation of the gradient methods' step reports."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import StepInfo, task_pairs


class EpochDiagnostics:
    """Accumulates :class:`StepInfo` over an epoch on the training device (no per-step host sync).

    :meth:`summary` gives ``weight_<task>`` (mean over steps), ``grad_cos_<a>__<b>`` (mean over diagnosed
    steps) and ``conflict_share`` (share of diagnosed steps where any pair had a negative cosine); cosine keys
    and ``conflict_share`` are NaN when no step was diagnosed.
    """

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = tuple(task_names)
        self.pairs = task_pairs(self.task_names)
        self.reset()

    def reset(self) -> None:
        """Start a new epoch."""
        self.steps = 0
        self.diagnosed = 0
        self.weight_sum: torch.Tensor | None = None
        self.cosine_sum: torch.Tensor | None = None
        self.conflicts: torch.Tensor | None = None

    def update(self, info: StepInfo) -> None:
        """Add one step's report."""
        weights = info.weights.detach().float()
        self.weight_sum = weights if self.weight_sum is None else self.weight_sum + weights
        self.steps += 1
        if info.cosine is None:
            return
        cosine = info.cosine.detach().float()
        conflict = info.conflict().float()
        self.cosine_sum = cosine if self.cosine_sum is None else self.cosine_sum + cosine
        self.conflicts = conflict if self.conflicts is None else self.conflicts + conflict
        self.diagnosed += 1

    def summary(self) -> dict[str, float]:
        """Epoch metrics (see class docstring)."""
        out: dict[str, float] = {}
        if self.weight_sum is not None:
            weights = (self.weight_sum / self.steps).cpu().tolist()
            out.update({f"weight_{t}": w for t, w in zip(self.task_names, weights, strict=True)})
        if self.cosine_sum is not None and self.conflicts is not None:
            cosine = (self.cosine_sum / self.diagnosed).cpu()
            out.update({f"grad_cos_{key}": float(cosine[i, j]) for key, (i, j) in self.pairs.items()})
            out["conflict_share"] = float(self.conflicts.cpu()) / self.diagnosed
        else:
            out.update({f"grad_cos_{key}": float("nan") for key in self.pairs})
            out["conflict_share"] = float("nan")
        return out
