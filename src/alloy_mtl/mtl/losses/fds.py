"""Feature distribution smoothing (FDS, Yang et al. 2021) for one regression task.

Per label bin, FDS tracks the mean and variance of the features (running across epochs with momentum),
smooths these statistics across neighbouring bins with the LDS kernel, and re-calibrates the features of a
training sample from its bin's statistics to the smoothed ones::

    f' = (f - mean_b) * sqrt(clip(smoothed_var_b / var_b, clip_min, clip_max)) + smoothed_mean_b

How a trainer wires it (it is optional and off by default; ``build_model`` attaches one FDS module per
task with ``fds.enabled``):

1. Training step: ``preds = model.forward_heads(model.encode(x), targets=batch_targets, epoch=epoch)``.
   In training mode each FDS module accumulates the batch's raw features (detached) into the current
   epoch's statistics and, from ``start_epoch`` on (once statistics exist), recalibrates the features fed
   to its task's head. In eval mode (validation, prediction) FDS is the identity.
2. Epoch end: ``FDSCallback(model).on_epoch_end(...)`` (a callback of the trainer's protocol) calls
   ``smooth()`` on every FDS module: the epoch's statistics are folded into the running ones and
   smoothed across bins, and the accumulators are reset.

``update_statistics(features, labels)`` can also be called by hand (e.g. with features of a separate
pass over the train set) when ``track_in_forward=False``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alloy_mtl.mtl.losses.lds import kernel_window, label_bin_edges
from alloy_mtl.mtl.tasks import FDSConfig

_MIN_VAR = 1e-8


class FDS(nn.Module):
    """Feature distribution smoothing over label bins.

    Args:
        num_features: feature size F.
        edges: ``bins + 1`` label bin edges (standardised label units, as the batches carry them).
        kernel: smoothing kernel across bins (as LDS).
        kernel_size: its size in bins (as LDS).
        sigma: its width (as LDS).
        start_epoch: first epoch in which features are recalibrated.
        momentum: weight of the previous running statistics when folding in an epoch's statistics.
        clip_min: lower bound of the variance ratio smoothed_var / var.
        clip_max: upper bound of that ratio.
        track_in_forward: accumulate statistics in ``forward`` while training.
    """

    def __init__(
        self,
        num_features: int,
        edges: np.ndarray,
        *,
        kernel: str = "gaussian",
        kernel_size: int = 5,
        sigma: float = 2.0,
        start_epoch: int = 1,
        momentum: float = 0.9,
        clip_min: float = 0.1,
        clip_max: float = 10.0,
        track_in_forward: bool = True,
    ) -> None:
        super().__init__()
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("edges: expected at least 2 strictly increasing bin edges")
        bins = len(edges) - 1
        self.num_features = num_features
        self.bins = bins
        self.start_epoch = start_epoch
        self.momentum = momentum
        self.clip_min = clip_min
        self.clip_max = clip_max
        self.track_in_forward = track_in_forward
        window = kernel_window(kernel, kernel_size, sigma)
        self.register_buffer("inner_edges", torch.tensor(edges[1:-1], dtype=torch.float32))
        self.register_buffer("window", torch.tensor(window / window.sum(), dtype=torch.float32))
        for name in ("running_mean", "smoothed_mean", "acc_mean", "acc_m2"):
            self.register_buffer(name, torch.zeros(bins, num_features))
        for name in ("running_var", "smoothed_var"):
            self.register_buffer(name, torch.ones(bins, num_features))
        self.register_buffer("seen", torch.zeros(bins, dtype=torch.bool))
        self.register_buffer("acc_count", torch.zeros(bins))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, num_features: int, config: FDSConfig, train_labels: Any) -> FDS:
        """FDS with bins laid out over the train labels (NaN = missing) and ``config``'s settings."""
        labels = np.asarray(train_labels, dtype=np.float64)
        return cls(
            num_features,
            label_bin_edges(labels, config.bins),
            kernel=config.kernel,
            kernel_size=config.kernel_size,
            sigma=config.sigma,
            start_epoch=config.start_epoch,
            momentum=config.momentum,
            clip_min=config.clip_min,
            clip_max=config.clip_max,
        )

    def bin_of(self, labels: Tensor) -> Tensor:
        """Bin index of each label (outside the range: first/last bin)."""
        return torch.bucketize(labels.float().contiguous(), self.inner_edges, right=True)

    @torch.no_grad()
    def update_statistics(self, features: Tensor, labels: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate per-bin feature mean and variance of this epoch (Chan's parallel update)."""
        valid = torch.isfinite(labels)
        if mask is not None:
            valid = valid & mask
        f = features.detach().float()
        w = valid.float()
        idx = self.bin_of(torch.where(valid, labels, torch.zeros_like(labels)))
        n_b = torch.zeros_like(self.acc_count).index_add_(0, idx, w)
        sum_b = torch.zeros_like(self.acc_mean).index_add_(0, idx, f * w[:, None])
        mean_b = sum_b / n_b.clamp(min=1)[:, None]
        m2_b = torch.zeros_like(self.acc_m2).index_add_(0, idx, (f - mean_b[idx]) ** 2 * w[:, None])
        n_a = self.acc_count
        n = n_a + n_b
        delta = mean_b - self.acc_mean
        share_b = (n_b / n.clamp(min=1))[:, None]
        self.acc_mean += delta * share_b
        self.acc_m2 += m2_b + delta**2 * (n_a[:, None] * share_b)
        self.acc_count.copy_(n)

    def _smooth_across_bins(self, stats: Tensor, weight: Tensor) -> Tensor:
        """Kernel-weighted average over neighbouring bins, counting only bins with ``weight`` 1."""
        pad = (len(self.window) - 1) // 2
        kernel = self.window.view(1, 1, -1)
        num = F.conv1d((stats * weight[:, None]).T.unsqueeze(1), kernel, padding=pad).squeeze(1).T
        den = F.conv1d(weight.view(1, 1, -1), kernel, padding=pad).view(-1)
        return torch.where(den[:, None] > 0, num / den.clamp(min=1e-12)[:, None], stats)

    @torch.no_grad()
    def smooth(self) -> None:
        """Epoch end: fold the epoch's statistics into the running ones, smooth across bins, reset."""
        has = self.acc_count > 0
        if bool(has.any()):
            epoch_var = (self.acc_m2 / self.acc_count.clamp(min=1)[:, None]).clamp(min=_MIN_VAR)
            keep = torch.where(
                self.seen, torch.full_like(self.acc_count, self.momentum), torch.zeros_like(self.acc_count)
            )
            keep = torch.where(has, keep, torch.ones_like(keep))[:, None]
            self.running_mean.copy_(keep * self.running_mean + (1 - keep) * self.acc_mean)
            self.running_var.copy_(keep * self.running_var + (1 - keep) * epoch_var)
            self.seen |= has
            weight = self.seen.float()
            self.smoothed_mean.copy_(self._smooth_across_bins(self.running_mean, weight))
            self.smoothed_var.copy_(self._smooth_across_bins(self.running_var, weight))
            self.ready.fill_(True)
        self.acc_count.zero_()
        self.acc_mean.zero_()
        self.acc_m2.zero_()

    def calibrate(self, features: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        """Recalibrate the features of samples with a label in a bin that has statistics."""
        valid = torch.isfinite(labels)
        if mask is not None:
            valid = valid & mask
        idx = self.bin_of(torch.where(valid, labels, torch.zeros_like(labels)))
        ratio = (self.smoothed_var[idx] / self.running_var[idx]).clamp(self.clip_min, self.clip_max)
        calibrated = (features - self.running_mean[idx]) * ratio.sqrt() + self.smoothed_mean[idx]
        use = (valid & self.seen[idx])[:, None]
        return torch.where(use, calibrated.to(features.dtype), features)

    def forward(self, features: Tensor, labels: Tensor, epoch: int, mask: Tensor | None = None) -> Tensor:
        """Training: track statistics and, from ``start_epoch`` on, recalibrate. Eval: identity."""
        if not self.training:
            return features
        if self.track_in_forward:
            self.update_statistics(features, labels, mask)
        if epoch < self.start_epoch or not bool(self.ready):
            return features
        return self.calibrate(features, labels, mask)


class FDSCallback:
    """Trainer callback: at each epoch end, ``smooth()`` every FDS module found in ``module``."""

    def __init__(self, module: nn.Module) -> None:
        self.modules = [m for m in module.modules() if isinstance(m, FDS)]

    def on_train_begin(self, trainer: Any) -> None:
        """Nothing to do at the start."""

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        """Fold and smooth the epoch's feature statistics."""
        for fds in self.modules:
            fds.smooth()

    def on_train_end(self, trainer: Any, history: Any) -> None:
        """Nothing to do at the end."""
