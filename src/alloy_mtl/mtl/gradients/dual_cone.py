"""torchjd's dual-cone projection solved with scipy's NNLS (used when quadprog/qpsolvers are not installed).

A module of its own because it subclasses a torchjd class: importing it imports torchjd, which the rest of
the gradient package does only when a torchjd method runs.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor
from torchjd.linalg import DualConeProjector


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
