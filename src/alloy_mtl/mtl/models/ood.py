"""Unknown-material score carried inside a model: Mahalanobis distance of its shared features.

A classifier answers one of its classes for anything; a titanium plate came back "7075" at probability 1.0.
The features the heads read are what the model knows, so an image whose features lie far from every class's
cloud of training features is one it should not answer. Following Lee et al. (2018, "A simple unified
framework for detecting out-of-distribution samples"), each class's training features are modelled as a
Gaussian with its own mean and a covariance shared by all classes; the score of an image is its smallest
squared Mahalanobis distance to a class mean (higher: less like anything trained on).

The score's distribution on validation images (known materials the model did not fit) is kept as quantiles,
so the threshold for any stated rate of rejected known images is read at predict time
(:meth:`FeatureDensity.threshold`) without refitting. A model trained before this existed, or with
``training.ood: none``, carries an unfitted score (``fitted`` false): it answers as before, with NaN scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from alloy_mtl.mtl.models.fitted_buffers import FittedAfterTraining

__all__ = ["DEFAULT_REJECT_RATE", "RIDGE", "FeatureDensity"]

DEFAULT_REJECT_RATE = 0.01
"""The share of validation images of the known classes the served threshold withholds unless a request says
otherwise (``reject_rate``): on an unseen detector unit it withheld 2-5 % of known images and caught every
far-OOD one (benchmarks/results/bench_ood.md)."""

RIDGE = 1e-3
"""Ridge added to the shared covariance, relative to its mean variance (features of a small or collinear
training set would give a singular covariance)."""
REFERENCE_LEVELS = 401
"""Quantile levels of the validation scores kept in the model (every 0.25 %)."""


class FeatureDensity(FittedAfterTraining):
    """Class means and a shared precision of the features, and the validation scores' quantiles (buffers only).

    Args:
        num_features: feature width F.
        num_classes: classes K of the classification head the classes come from.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(num_classes, num_features))
        self.register_buffer("precision", torch.zeros(num_features, num_features))
        self.register_buffer("reference", torch.zeros(REFERENCE_LEVELS))
        # 1: fitted (a float, which every DDP backend broadcasts)
        self.register_buffer("is_fitted", torch.zeros(()))

    @property
    def fitted(self) -> bool:
        """Whether means, precision and the validation reference have been fitted."""
        return bool(self.is_fitted > 0.5)

    @torch.no_grad()
    def fit(self, features: Tensor, labels: Tensor) -> FeatureDensity:
        """Fit class means and the shared covariance on training ``features`` (N, F) with ``labels`` (N,);
        rows labelled < 0 are ignored. Every class must occur (ValueError naming those that do not)."""
        features = features.detach().double()
        labels = labels.detach().long()
        keep = labels >= 0
        features, labels = features[keep], labels[keep]
        k = self.means.shape[0]
        missing = [c for c in range(k) if not bool((labels == c).any())]
        if missing:
            raise ValueError(f"FeatureDensity.fit: classes {missing} have no training features (of {k})")
        means = torch.stack([features[labels == c].mean(dim=0) for c in range(k)])
        centred = features - means[labels]
        cov = centred.T @ centred / len(features)
        cov += torch.eye(cov.shape[0], dtype=cov.dtype) * RIDGE * max(float(cov.diagonal().mean()), 1e-12)
        self.means.copy_(means.float())
        self.precision.copy_(torch.linalg.inv(cov).float())
        self.is_fitted.fill_(0.0)  # until the reference is set from validation scores
        return self

    def distances(self, features: Tensor) -> Tensor:
        """Squared Mahalanobis distance of every row of ``features`` (B, F) to every class mean: (B, K) (the
        means and precision must have been fitted)."""
        # in float32 also under bf16 autocast: the distances of far images run to 1e6 and more
        with torch.autocast(device_type=features.device.type, enabled=False):
            diff = features.float()[:, None, :] - self.means[None]
            return torch.einsum("bkf,fg,bkg->bk", diff, self.precision.float(), diff)

    def forward(self, features: Tensor) -> Tensor:
        """The unknown-material score (B,): the smallest squared distance to a class mean (NaN if unfitted)."""
        if not self.fitted:
            return torch.full((len(features),), float("nan"), device=features.device)
        return self.distances(features).min(dim=1).values

    @torch.no_grad()
    def set_reference(self, scores: Tensor) -> FeatureDensity:
        """Keep the quantiles of validation ``scores`` (finite ones; ValueError if none)."""
        scores = scores.detach().double().reshape(-1)
        scores = scores[torch.isfinite(scores)]
        if not len(scores):
            raise ValueError("FeatureDensity.set_reference: no finite validation score")
        levels = torch.linspace(0.0, 1.0, REFERENCE_LEVELS, dtype=torch.float64)
        self.reference.copy_(torch.quantile(scores, levels).float())
        self.is_fitted.fill_(1.0)
        return self

    def threshold(self, reject_rate: float) -> float:
        """The score above which an image is called unknown, so that ``reject_rate`` of validation images
        would be (interpolated between the kept quantiles); NaN if unfitted."""
        rate = float(reject_rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"reject_rate: expected a fraction in [0, 1), got {reject_rate!r}")
        if not self.fitted:
            return float("nan")
        reference = self.reference.double().numpy()
        levels = np.linspace(0.0, 1.0, REFERENCE_LEVELS)
        return float(np.interp(1.0 - rate, levels, reference))

    def summary(self) -> dict[str, Any]:
        """Validation score quantiles (median, 95th, 99th) for reports; empty if unfitted."""
        if not self.fitted:
            return {}
        return {f"val_score_q{q}": self.threshold(1.0 - q / 100.0) for q in (50, 95, 99)}
