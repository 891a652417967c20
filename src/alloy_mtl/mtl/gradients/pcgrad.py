"""PCGrad (Yu et al., NeurIPS 2020): project conflicting task gradients, on the shared parameters (exact) or
on the shared representation (fast)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .base import (
    GradientMethod,
    StepInfo,
    accumulate_grads,
    cosine_from_gramian,
    split_flat,
    task_gradients,
)


def pcgrad_combine(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Combine per-task gradients with PCGrad's projection rule.

    For every task ``i`` (in order), its gradient is projected, against the other tasks in a random order,
    onto the normal plane of each *original* gradient ``g_j`` it conflicts with
    (``g_i <- g_i - min(g_i.g_j, 0) / |g_j|^2 g_j``); the projected gradients are summed.

    Args:
        grads: (T, D) per-task gradients.
        generator: CPU generator for the projection orders (reproducible runs).

    Returns:
        (D,) combined gradient. Computed without host synchronisation.
    """
    if grads.ndim != 2:
        raise ValueError(f"pcgrad_combine: expected a (tasks, dim) matrix, got shape {tuple(grads.shape)}")
    num_tasks = grads.shape[0]
    squared_norms = (grads * grads).sum(dim=1)
    projected = grads.clone()
    for i in range(num_tasks):
        order = torch.randperm(num_tasks, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = projected[i] @ grads[j]
            coef = torch.where(dot < 0, dot / squared_norms[j].clamp_min(1e-20), torch.zeros_like(dot))
            projected[i] = projected[i] - coef * grads[j]
    return projected.sum(dim=0)


class _PCGradBase(GradientMethod):
    def __init__(self, task_names: Sequence[str], *, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(task_names, **kwargs)
        self.generator = torch.Generator().manual_seed(int(seed))

    def state_dict(self) -> dict[str, Any]:
        """Step counter and the projection-order generator state."""
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])


class PCGrad(_PCGradBase):
    """Exact PCGrad on the shared parameters: one ``autograd.grad`` per task through the backbone.

    Heads get their own task gradient; per-task shared gradients give the cosine diagnostics every step.
    """

    name = "pcgrad"
    computes_task_gradients = True

    def _backward(
        self,
        losses: list[Tensor],
        shared_params: list[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None,
    ) -> StepInfo:
        heads = self._head_parameters(losses, features, task_params)
        num_shared = len(shared_params)
        rows = []
        for loss, head in zip(losses, heads, strict=True):
            grads = task_gradients(loss, shared_params + head)
            accumulate_grads(head, grads[num_shared:])
            rows.append(torch.cat([g.reshape(-1).float() for g in grads[:num_shared]]))
        matrix = torch.stack(rows)
        del rows
        cosine = cosine_from_gramian(matrix @ matrix.T)
        combined = pcgrad_combine(matrix, self.generator)
        accumulate_grads(shared_params, split_flat(combined, shared_params))
        return StepInfo(self.task_names, self.static_weights.to(features.device), cosine)


class PCGradFast(_PCGradBase):
    """PCGrad on the gradient w.r.t. the shared representation (the batch's features, flattened).

    Per-task gradients are taken w.r.t. ``features`` only (heads-only backward, cheap); the projected sum is
    back-propagated through the backbone once. Cosine diagnostics on the shared parameters follow
    ``diagnostics_every``.
    """

    name = "pcgrad_fast"

    def _backward(
        self,
        losses: list[Tensor],
        shared_params: list[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None,
    ) -> StepInfo:
        heads = self._head_parameters(losses, features, task_params)
        rows = []
        for loss, head in zip(losses, heads, strict=True):
            grads = task_gradients(loss, [features, *head])
            accumulate_grads(head, grads[1:])
            rows.append(grads[0].reshape(-1).float())
        combined = pcgrad_combine(torch.stack(rows), self.generator)
        features.backward(combined.reshape(features.shape).to(features.dtype))
        return StepInfo(self.task_names, self.static_weights.to(features.device))
