"""Jacobian descent with torchjd 0.18 aggregators (UPGrad, MGDA, DualProj, IMTL-G, Aligned-MTL, ConFIG, ...).

``torchjd.autojac.mtl_backward`` fills each head's ``.grad`` with its own task gradient and stores the
Jacobian (one row per task) of the shared parameters in their ``.jac`` fields; ``jac_to_grad`` aggregates it
into ``.grad``. The Jacobian rows are the per-task shared gradients, so cosine diagnostics come every step.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from importlib.util import find_spec
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .base import GradientMethod, StepInfo, accumulate_grads, combine, cosine_from_gramian, gramian

if TYPE_CHECKING:
    from torchjd.aggregation import Aggregator
    from torchjd.linalg import DualConeProjector


def _aggregation() -> ModuleType:
    """``torchjd.aggregation``, imported on first use: the package imports without torchjd (a GPU benchmark
    host may lack it), and only the torchjd methods need it."""
    return importlib.import_module("torchjd.aggregation")


def _dual_cone_projector() -> DualConeProjector | None:
    """torchjd's default quadprog projector when installed, else the scipy NNLS one."""
    if find_spec("quadprog") is not None and find_spec("qpsolvers") is not None:
        return None
    from .dual_cone import NNLSDualConeProjector

    return NNLSDualConeProjector()


#: name -> (factory(params, num_tasks), allowed parameter names)
AGGREGATORS: dict[str, tuple[Callable[[dict[str, Any], int], Aggregator], tuple[str, ...]]] = {
    "upgrad": (lambda p, m: _aggregation().UPGrad(projector=_dual_cone_projector()), ()),
    "dualproj": (lambda p, m: _aggregation().DualProj(projector=_dual_cone_projector()), ()),
    "mgda": (
        lambda p, m: _aggregation().MGDA(epsilon=p.get("epsilon", 1e-3), max_iters=p.get("max_iters", 100)),
        ("epsilon", "max_iters"),
    ),
    "cagrad": (lambda p, m: _aggregation().CAGrad(c=p.get("c", 0.5)), ("c",)),
    "imtlg": (lambda p, m: _aggregation().IMTLG(), ()),
    "aligned_mtl": (
        lambda p, m: _aggregation().AlignedMTL(scale_mode=p.get("scale_mode", "min")),
        ("scale_mode",),
    ),
    "config": (lambda p, m: _aggregation().ConFIG(), ()),
    "fairgrad": (
        lambda p, m: _aggregation().FairGrad(alpha=p.get("fairgrad_alpha", 1.0)),
        ("fairgrad_alpha",),
    ),
    "nash_mtl": (lambda p, m: _aggregation().NashMTL(n_tasks=m), ()),
}


class JacobianDescent(GradientMethod):
    """Gradient method backed by a torchjd aggregator.

    Args:
        aggregator: the torchjd aggregator combining the Jacobian rows.
        parallel_chunk_size: passed to ``mtl_backward`` (None: all tasks at once through ``torch.vmap``;
            1: sequentially, for modules ``vmap`` cannot handle).
    """

    computes_task_gradients = True

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        aggregator: Aggregator,
        name: str = "jd",
        parallel_chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_names, **kwargs)
        self.aggregator = aggregator
        self.name = name
        self.parallel_chunk_size = parallel_chunk_size

    def avoid_vmap(self) -> None:
        """Take the tasks' backward passes one at a time: ``torch.vmap`` (torchjd's default) cannot
        differentiate a graph of mixed bf16 and float32 ops ("expected scalar type BFloat16 but found Float")
        nor SyncBatchNorm ("NYI: querying is_contiguous inside of vmap"), both seen on an H100."""
        if self.parallel_chunk_size is None:
            self.parallel_chunk_size = 1

    def _backward(
        self,
        losses: list[Tensor],
        shared_params: list[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None,
    ) -> StepInfo:
        from torchjd.autojac import jac_to_grad, mtl_backward

        heads = None if task_params is None else [list(task_params[t]) for t in self.task_names]
        mtl_backward(
            losses,
            features=features,
            tasks_params=heads,
            shared_params=shared_params,
            parallel_chunk_size=self.parallel_chunk_size,
        )
        self._average_([p.jac for p in shared_params])  # DDP: the global batch's Jacobian, before aggregating
        per_task = [[p.jac[k] for p in shared_params] for k in range(self.num_tasks)]
        gram = gramian(per_task)
        if isinstance(self.aggregator, _aggregation().GramianWeightedAggregator):
            # torchjd's own Gramian route (jac_to_grad's optimize_gramian_computation), reusing our Gramian
            weights = self.aggregator.gramian_weighting(gram)
            accumulate_grads(shared_params, combine(per_task, weights.tolist()))
            del per_task
            for param in shared_params:
                del param.jac
        else:
            del per_task
            weights = jac_to_grad(shared_params, self.aggregator)
        if weights is None:
            weights = torch.full((self.num_tasks,), float("nan"), device=features.device)
        weights = weights.detach().to(features.device) * self.static_weights.to(features.device)
        return StepInfo(self.task_names, weights, cosine_from_gramian(gram))


def build_jacobian_descent(
    name: str, task_names: Sequence[str], params: dict[str, Any], **common: Any
) -> JacobianDescent:
    """Build the torchjd-backed method ``name`` (a key of :data:`AGGREGATORS`)."""
    factory, _ = AGGREGATORS[name]
    try:
        aggregator = factory(params, len(task_names))
    except ImportError as err:
        raise ValueError(f"gradient method {name!r} needs optional dependencies: {err}") from err
    return JacobianDescent(
        task_names,
        aggregator=aggregator,
        name=name,
        parallel_chunk_size=params.get("parallel_chunk_size"),
        **common,
    )
