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
    combine,
    cosine_from_gramian,
    gramian,
    task_gradients,
)


def pcgrad_weights(gramian: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """PCGrad as weights on the original task gradients, computed from their Gramian ``G = J J^T``.

    Every projected gradient stays a combination ``sum_k A[i, k] g_k`` of the originals, so the projection
    rule only needs inner products: for task ``i`` and each other task ``j`` in a random order,
    ``A[i] <- A[i] - min(A[i] . G[:, j], 0) / G[j, j] * e_j``. Returns ``sum_i A[i]`` (T,), so the combined
    gradient is ``weights @ J``: exact PCGrad without touching the (T, D) gradients more than twice.
    Runs on the CPU in float64 (T x T is tiny).
    """
    gram = gramian.detach().to("cpu", torch.float64)
    num_tasks = gram.shape[0]
    coefficients = torch.eye(num_tasks, dtype=torch.float64)
    for i in range(num_tasks):
        order = torch.randperm(num_tasks, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = float(coefficients[i] @ gram[:, j])
            if dot < 0 and gram[j, j] > 0:
                coefficients[i, j] -= dot / float(gram[j, j])
    return coefficients.sum(dim=0)


def pcgrad_combine(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Combine per-task gradients with PCGrad's projection rule (Yu et al. 2020).

    For every task ``i``, its gradient is projected, against the other tasks in a random order, onto the
    normal plane of each *original* gradient ``g_j`` it conflicts with
    (``g_i <- g_i - min(g_i.g_j, 0) / |g_j|^2 g_j``); the projected gradients are summed.

    Args:
        grads: (T, D) per-task gradients.
        generator: CPU generator for the projection orders (reproducible runs).

    Returns:
        (D,) combined gradient.
    """
    if grads.ndim != 2:
        raise ValueError(f"pcgrad_combine: expected a (tasks, dim) matrix, got shape {tuple(grads.shape)}")
    matrix = grads.float()
    weights = pcgrad_weights(matrix @ matrix.T, generator)
    return weights.to(matrix.device, matrix.dtype) @ matrix


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
        per_task = []
        for loss, head in zip(losses, heads, strict=True):
            grads = task_gradients(loss, shared_params + head)
            accumulate_grads(head, grads[num_shared:])
            per_task.append(grads[:num_shared])
        self._average_([grad for grads in per_task for grad in grads])  # DDP: the global batch's gradients
        gram = gramian(per_task)
        weights = pcgrad_weights(gram, self.generator).tolist()
        accumulate_grads(shared_params, combine(per_task, weights))
        return StepInfo(self.task_names, self.static_weights.to(features.device), cosine_from_gramian(gram))


class PCGradFast(_PCGradBase):
    """PCGrad on the gradient w.r.t. the shared representation (the batch's features, flattened).

    Per-task gradients are taken w.r.t. ``features`` only (heads-only backward, cheap); the projected sum is
    back-propagated through the backbone once. Cosine diagnostics on the shared parameters follow
    ``diagnostics_every``.
    """

    name = "pcgrad_fast"
    # its per-task gradients are per-sample feature gradients: a rank holds only its own batch's rows
    supports_distributed = False

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
