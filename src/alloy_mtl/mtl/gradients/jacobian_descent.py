"""Jacobian descent with torchjd 0.18 aggregators (UPGrad, MGDA, DualProj, IMTL-G, Aligned-MTL, ConFIG, ...).

``torchjd.autojac.mtl_backward`` fills each head's ``.grad`` with its own task gradient and stores the
Jacobian (one row per task) of the shared parameters in their ``.jac`` fields; ``jac_to_grad`` aggregates it
into ``.grad``. The Jacobian rows are the per-task shared gradients, so cosine diagnostics come every step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib.util import find_spec
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor
from torchjd import aggregation
from torchjd.autojac import jac_to_grad, mtl_backward
from torchjd.linalg import DualConeProjector

from .base import GradientMethod, StepInfo, accumulate_grads, combine, cosine_from_gramian, gramian


class NNLSDualConeProjector(DualConeProjector):
    """Dual-cone projection weights via scipy's non-negative least squares (no extra dependency).

    Solves ``min_v v^T G v  s.t.  v >= u`` for each ``u`` (Proposition 1 of Quinton & Rey 2024, the problem
    torchjd's ``QuadprogProjector`` solves): with ``G = L L^T`` and ``v = u + z``, ``z >= 0``, it is the NNLS
    problem ``min_z ||L^T z + L^T u||``. Like torchjd, ``G`` is normalised by its trace and regularised.
    """

    def __init__(self, *, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> None:
        self.norm_eps = norm_eps
        self.reg_eps = reg_eps

    def __call__(self, U: Tensor, G: Tensor) -> Tensor:
        """Projection weights, same shape as ``U`` (``[..., m]``)."""
        gram = G.detach().cpu().double().numpy()
        trace = float(np.trace(gram))
        gram = gram / trace if trace >= self.norm_eps else np.zeros_like(gram)
        gram = gram + self.reg_eps * np.eye(gram.shape[0])
        lower = np.linalg.cholesky(gram)
        design = lower.T
        flat = U.detach().cpu().double().numpy().reshape(-1, gram.shape[0])
        out = np.empty_like(flat)
        for row, u in enumerate(flat):
            z, _ = nnls(design, -design @ u)
            out[row] = u + z
        return torch.as_tensor(out.reshape(U.shape), device=G.device, dtype=G.dtype)


def _dual_cone_projector() -> DualConeProjector | None:
    """torchjd's default quadprog projector when installed, else the scipy NNLS one."""
    if find_spec("quadprog") is not None and find_spec("qpsolvers") is not None:
        return None
    return NNLSDualConeProjector()


#: name -> (factory(params, num_tasks), allowed parameter names)
AGGREGATORS: dict[str, tuple[Callable[[dict[str, Any], int], aggregation.Aggregator], tuple[str, ...]]] = {
    "upgrad": (lambda p, m: aggregation.UPGrad(projector=_dual_cone_projector()), ()),
    "dualproj": (lambda p, m: aggregation.DualProj(projector=_dual_cone_projector()), ()),
    "mgda": (
        lambda p, m: aggregation.MGDA(epsilon=p.get("epsilon", 1e-3), max_iters=p.get("max_iters", 100)),
        ("epsilon", "max_iters"),
    ),
    "cagrad": (lambda p, m: aggregation.CAGrad(c=p.get("c", 0.5)), ("c",)),
    "imtlg": (lambda p, m: aggregation.IMTLG(), ()),
    "aligned_mtl": (
        lambda p, m: aggregation.AlignedMTL(scale_mode=p.get("scale_mode", "min")),
        ("scale_mode",),
    ),
    "config": (lambda p, m: aggregation.ConFIG(), ()),
    "fairgrad": (lambda p, m: aggregation.FairGrad(alpha=p.get("fairgrad_alpha", 1.0)), ("fairgrad_alpha",)),
    "nash_mtl": (lambda p, m: aggregation.NashMTL(n_tasks=m), ()),
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
        aggregator: aggregation.Aggregator,
        name: str = "jd",
        parallel_chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_names, **kwargs)
        self.aggregator = aggregator
        self.name = name
        self.parallel_chunk_size = parallel_chunk_size

    def _backward(
        self,
        losses: list[Tensor],
        shared_params: list[Tensor],
        features: Tensor,
        task_params: Mapping[str, Sequence[Tensor]] | None,
    ) -> StepInfo:
        heads = None if task_params is None else [list(task_params[t]) for t in self.task_names]
        mtl_backward(
            losses,
            features=features,
            tasks_params=heads,
            shared_params=shared_params,
            parallel_chunk_size=self.parallel_chunk_size,
        )
        per_task = [[p.jac[k] for p in shared_params] for k in range(self.num_tasks)]
        gram = gramian(per_task)
        if isinstance(self.aggregator, aggregation.GramianWeightedAggregator):
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
