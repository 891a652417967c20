"""Split-conformal prediction sets and intervals carried inside a model (fitted on validation after training).

Classification (class-conditional, "Mondrian", split conformal with the LAC score ``1 - p_y``): for every class
``y``, ``q_y`` is the ``ceil((n_y + 1) c) / n_y`` empirical quantile of the scores of the ``n_y`` validation
images of class ``y``; the prediction set of an image is every class with ``1 - p_y <= q_y``. On data
exchangeable with the validation split, each class is covered with probability at least ``c`` (the tail
classes too, which a marginal guarantee would sacrifice to the head). Regression (split conformal on absolute
residuals): ``y_hat +- q`` with ``q`` the same quantile of ``|y - y_hat|`` over the labelled validation images.

The guarantee holds where validation data is like the data predicted; on another instrument it may not, which
the evaluation measures (coverage per alloy on the evaluation set). A class with too few validation images for
the level (``ceil((n+1) c) > n``) gets ``q = inf``: it is always in the set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from alloy_mtl.mtl.models.fitted_buffers import FittedAfterTraining

__all__ = ["DEFAULT_COVERAGE", "ConformalSets", "conformal_quantile", "set_labels"]

DEFAULT_COVERAGE = 0.9


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ``ceil((n + 1) coverage) / n`` empirical quantile of ``scores`` (the finite-sample conformal one);
    ``inf`` when ``n`` is too small for ``coverage``."""
    values = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    values = values[np.isfinite(values)]
    n = len(values)
    rank = math.ceil((n + 1) * coverage)
    if n == 0 or rank > n:
        return math.inf
    return float(values[rank - 1])


def set_labels(classes: Sequence[str], members: np.ndarray) -> list[str]:
    """Each row's set as the served answer writes it: its classes joined by ``|`` (empty: no class)."""
    return ["|".join(c for c, inside in zip(classes, row, strict=True) if inside) for row in members]


class ConformalSets(FittedAfterTraining):
    """Per-class score thresholds and per-regression-task half-widths (buffers; ``fitted`` once set).

    Args:
        num_classes: classes of the classification head the sets are for.
        regression_tasks: regression task names (one half-width each).
    """

    def __init__(self, num_classes: int, regression_tasks: Sequence[str]) -> None:
        super().__init__()
        self.regression_tasks = list(regression_tasks)
        self.register_buffer("class_quantiles", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("half_widths", torch.zeros(len(self.regression_tasks), dtype=torch.float64))
        self.register_buffer("coverage", torch.zeros((), dtype=torch.float64))  # 0: not fitted

    @property
    def fitted(self) -> bool:
        """Whether the thresholds were fitted (at :attr:`coverage`)."""
        return bool(self.coverage > 0)

    @torch.no_grad()
    def fit(
        self,
        probs: np.ndarray,
        labels: np.ndarray,
        residuals: Mapping[str, np.ndarray],
        coverage: float = DEFAULT_COVERAGE,
    ) -> dict[str, object]:
        """Fit on validation ``probs`` (N, K) with ``labels`` (N,; < 0 unlabelled) and each regression task's
        absolute ``residuals`` (NaN unlabelled); returns the thresholds and counts for reports."""
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage: expected a fraction in (0, 1), got {coverage!r}")
        probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
        k = self.class_quantiles.shape[0]
        counts = [int((labels == c).sum()) for c in range(k)]
        quantiles = [conformal_quantile(1.0 - probs[labels == c, c], coverage) for c in range(k)]
        widths = [conformal_quantile(np.abs(residuals[task]), coverage) for task in self.regression_tasks]
        self.class_quantiles.copy_(torch.tensor(quantiles, dtype=torch.float64))
        self.half_widths.copy_(torch.tensor(widths, dtype=torch.float64))
        self.coverage.fill_(coverage)
        return {
            "coverage": coverage,
            "class_quantiles": quantiles,
            "class_counts": counts,
            "half_widths": dict(zip(self.regression_tasks, widths, strict=True)),
        }

    def sets(self, probs: Tensor | np.ndarray) -> np.ndarray:
        """(B, K) bool: class ``y`` is in an image's set when ``1 - p_y <= q_y``."""
        p = (
            probs.detach().double().cpu().numpy()
            if isinstance(probs, Tensor)
            else np.asarray(probs, np.float64)
        )
        return 1.0 - p <= self.class_quantiles.cpu().numpy()[None, :]

    def half_width(self, task: str) -> float:
        """The interval half-width of regression ``task`` (original units)."""
        return float(self.half_widths[self.regression_tasks.index(task)])
