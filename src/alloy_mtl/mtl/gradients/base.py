"""Common machinery of the gradient methods: the step report, the base class and gradient helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

#: Pair key separator in metric names: ``grad_cos_<taskA>__<taskB>``.
PAIR_SEPARATOR = "__"


@dataclass
class StepInfo:
    """What a gradient method reports about one optimisation step.

    Tensors stay on the training device and detached, so a step costs no host synchronisation;
    convert with :meth:`weights_dict` / :meth:`cosine_dict` only when needed.

    Attributes:
        task_names: task order of ``weights`` and ``cosine``.
        weights: (T,) effective weight of every task loss in this step.
        cosine: (T, T) cosine similarity of the per-task gradients on the shared parameters, or None
            when this step was not diagnosed.
    """

    task_names: tuple[str, ...]
    weights: Tensor
    cosine: Tensor | None = None

    @property
    def diagnosed(self) -> bool:
        """True when this step computed gradient cosines."""
        return self.cosine is not None

    def conflict(self) -> Tensor | None:
        """0-d bool tensor: True when any pair of task gradients has a negative cosine (None if undiagnosed)."""
        if self.cosine is None:
            return None
        rows, cols = torch.triu_indices(len(self.task_names), len(self.task_names), offset=1)
        return (self.cosine[rows, cols] < 0).any()

    def weights_dict(self) -> dict[str, float]:
        """Task weights as ``{task: float}``."""
        return dict(zip(self.task_names, self.weights.detach().float().cpu().tolist(), strict=True))

    def cosine_dict(self) -> dict[str, float]:
        """Pairwise cosines as ``{"<taskA>__<taskB>": float}`` (empty when undiagnosed)."""
        if self.cosine is None:
            return {}
        matrix = self.cosine.detach().float().cpu()
        return {key: float(matrix[i, j]) for key, (i, j) in task_pairs(self.task_names).items()}


class GradientSync(Protocol):
    """Averages tensors over data-parallel ranks (``alloy_mtl.mtl.parallel.process_group.DistributedContext`` fits)."""

    world_size: int

    def average_(self, tensors: Sequence[Tensor]) -> None:
        """Replace every tensor by its mean over the ranks, in place."""


def task_pairs(task_names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Unordered task pairs ``{"a__b": (i, j)}`` with ``i < j`` in task order."""
    names = list(task_names)
    return {
        f"{names[i]}{PAIR_SEPARATOR}{names[j]}": (i, j)
        for i in range(len(names))
        for j in range(i + 1, len(names))
    }


def cosine_from_gramian(gramian: Tensor, eps: float = 1e-12) -> Tensor:
    """Cosine matrix from a Gramian ``G = J J^T``; rows of zero norm get cosine 0 with every other row."""
    norms = gramian.diagonal().clamp_min(0).sqrt()
    return gramian / (norms[:, None] * norms[None, :]).clamp_min(eps)


def task_gradients(loss: Tensor, inputs: Sequence[Tensor]) -> list[Tensor]:
    """Gradients of one loss w.r.t. ``inputs`` keeping the graph; zeros where the loss does not depend on them."""
    if not loss.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(
        loss, list(inputs), retain_graph=True, allow_unused=True, materialize_grads=True
    )
    return list(grads)


def _inner(a: Tensor, b: Tensor) -> Tensor:
    if a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.reshape(-1).float(), b.reshape(-1).float())
    return (a.float() * b.float()).sum()


def gramian(per_task: Sequence[Sequence[Tensor]]) -> Tensor:
    """(T, T) Gramian ``G[k, l] = <g_k, g_l>`` of per-task gradients given as lists of per-parameter tensors.

    Sums per-parameter inner products, so the gradients are never concatenated into a (T, D) matrix.
    """
    num_tasks = len(per_task)
    entries: dict[tuple[int, int], Tensor] = {}
    for k in range(num_tasks):
        for j in range(k, num_tasks):
            entries[k, j] = torch.stack(
                [_inner(a, b) for a, b in zip(per_task[k], per_task[j], strict=True)]
            ).sum()
    return torch.stack(
        [torch.stack([entries[min(k, j), max(k, j)] for j in range(num_tasks)]) for k in range(num_tasks)]
    )


def shared_gramian(losses: Sequence[Tensor], shared_params: Sequence[Tensor]) -> Tensor:
    """Gramian of the per-task gradients on the shared parameters (graph kept for the real backward)."""
    return gramian([task_gradients(loss, shared_params) for loss in losses])


def combine(per_task: Sequence[Sequence[Tensor]], weights: Sequence[float]) -> list[Tensor]:
    """Per parameter, ``sum_k weights[k] * per_task[k][i]`` (weights as host floats: no device sync)."""
    combined = []
    for index in range(len(per_task[0])):
        total = per_task[0][index] * weights[0]
        for k in range(1, len(per_task)):
            total.add_(per_task[k][index], alpha=weights[k])
        combined.append(total)
    return combined


def accumulate_grads(params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
    """Add ``grads`` into the ``.grad`` fields of ``params`` as ``Tensor.backward`` would."""
    for param, raw in zip(params, grads, strict=True):
        grad = raw.to(dtype=param.dtype)
        if param.grad is None:
            param.grad = grad.detach().clone()
        else:
            param.grad.add_(grad)


def discover_head_parameters(loss: Tensor, features: Tensor) -> list[Tensor]:
    """Leaf tensors requiring grad that ``loss`` reaches without passing through ``features``.

    Fallback for callers that do not pass ``task_params``: these are the task head's parameters.
    """
    if loss.grad_fn is None:
        return []
    stop = features.grad_fn
    found: dict[int, Tensor] = {}
    seen: set[int] = set()
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node is stop or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None and variable is not features:
            found[id(variable)] = variable
        stack.extend(next_node for next_node, _ in node.next_functions)
    return list(found.values())


class GradientMethod:
    """Base class: turns per-task losses into ``.grad`` of every parameter (shared and heads).

    Task losses are first multiplied by the static task weights (the task spec ``weight``); the method then
    combines them. Subclasses implement :meth:`_backward`.

    Args:
        task_names: task order used for weights and cosines.
        task_weights: static weight per task (default 1.0 each).
        diagnostics_every: for methods that do not compute per-task shared gradients anyway, compute the
            gradient cosines every this many steps (0 disables). Methods that do compute them report every step.
    """

    name = "base"
    #: True when the method computes per-task gradients on the shared parameters every step.
    computes_task_gradients = False
    #: False for a method that cannot run data-parallel (its per-task quantities are not averaged).
    supports_distributed = True

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        task_weights: Mapping[str, float] | None = None,
        diagnostics_every: int = 20,
    ) -> None:
        self.task_names = tuple(task_names)
        if not self.task_names:
            raise ValueError("gradient method: expected at least one task name")
        if len(set(self.task_names)) != len(self.task_names):
            raise ValueError(f"gradient method: duplicate task names in {self.task_names}")
        task_weights = dict(task_weights or {})
        unknown = sorted(set(task_weights) - set(self.task_names))
        if unknown:
            raise ValueError(
                f"gradient method: task_weights for unknown task(s) {unknown}; tasks: {self.task_names}"
            )
        if (
            isinstance(diagnostics_every, bool)
            or not isinstance(diagnostics_every, int)
            or diagnostics_every < 0
        ):
            raise ValueError(
                f"gradient method: diagnostics_every must be an integer >= 0, got {diagnostics_every!r}"
            )
        self.static_weights = torch.tensor([float(task_weights.get(t, 1.0)) for t in self.task_names])
        self.diagnostics_every = diagnostics_every
        self.step = 0
        #: Set under DDP: per-task gradients (and what a method derives weights from) are averaged over the
        #: ranks before they are combined, so every replica takes the same step.
        self.sync: GradientSync | None = None

    @property
    def num_tasks(self) -> int:
        """Number of tasks."""
        return len(self.task_names)

    def parameters(self) -> list[nn.Parameter]:
        """Extra learnable parameters the trainer must optimise (none by default)."""
        return []

    def to(self, device: torch.device | str) -> GradientMethod:
        """Move internal tensors to ``device``; returns self."""
        self.static_weights = self.static_weights.to(device)
        return self

    def avoid_vmap(self) -> None:
        """Called by a trainer whose graph ``torch.vmap`` cannot differentiate (bf16 autocast, SyncBatchNorm);
        a no-op unless the method batches its backward passes with ``vmap``."""

    def state_dict(self) -> dict[str, Any]:
        """Serializable state (tensors, numbers)."""
        return {"step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.step = int(state["step"])

    def _ordered_losses(self, losses: Mapping[str, Tensor]) -> list[Tensor]:
        missing = [t for t in self.task_names if t not in losses]
        extra = sorted(set(losses) - set(self.task_names))
        if missing or extra:
            raise ValueError(
                f"{self.name}: losses keys {sorted(losses)} do not match tasks {list(self.task_names)}"
                f" (missing {missing}, unexpected {extra})"
            )
        weights = self.static_weights.to(losses[self.task_names[0]].device)
        return [losses[t] * weights[i] for i, t in enumerate(self.task_names)]

    def _head_parameters(
        self, losses: Sequence[Tensor], features: Tensor, task_params: Mapping[str, Sequence[Tensor]] | None
    ) -> list[list[Tensor]]:
        if task_params is not None:
            return [list(task_params[t]) for t in self.task_names]
        return [discover_head_parameters(loss, features) for loss in losses]

    def _average_(self, tensors: Sequence[Tensor]) -> None:
        """Average ``tensors`` in place over the data-parallel ranks (no-op in a single process)."""
        if self.sync is not None:
            self.sync.average_(tensors)

    def diagnose_now(self) -> bool:
        """True when the current step gets gradient diagnostics."""
        if self.computes_task_gradients:
            return True
        return self.diagnostics_every > 0 and self.step % self.diagnostics_every == 0

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared_params: Sequence[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None = None,
    ) -> StepInfo:
        """Fill ``.grad`` of the shared parameters and every head from the task losses.

        Args:
            losses: scalar loss per task (graph attached through ``features``).
            shared_params: parameters of the shared backbone.
            features: the shared representation the heads consume.
            task_params: each task head's parameters; discovered from the graph when omitted.

        Returns:
            The step's task weights and, on diagnosed steps, gradient cosines.
        """
        ordered = self._ordered_losses(losses)
        cosine = None
        if not self.computes_task_gradients and self.diagnose_now():
            cosine = cosine_from_gramian(shared_gramian(ordered, shared_params))
        info = self._backward(ordered, list(shared_params), features, task_params)
        if cosine is not None:
            info.cosine = cosine
        self.step += 1
        return info

    def _backward(
        self,
        losses: list[Tensor],
        shared_params: list[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None,
    ) -> StepInfo:
        raise NotImplementedError
