"""Input normalisation that travels with the model: raw transmission I/I0 in, standardised attenuation out.

Radiographs carry the alloy in small relative differences of -ln(I/I0) across energy channels and along the
wedge; a CNN sees them far better as standardised attenuation than as raw intensities near 1. The statistics
are buffers of the model, so a saved model applies the same transform at inference time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

TRANSFORMS = ("neg_log", "identity")
_EPS = 1e-4


def _attenuation(x: np.ndarray | Tensor, transform: str) -> np.ndarray | Tensor:
    if transform == "identity":
        return x
    if isinstance(x, Tensor):
        return -torch.log(x.clamp_min(_EPS))
    return -np.log(np.clip(x, _EPS, None))


class InputNormalizer(nn.Module):
    """``(T(x) - mean) / std`` per channel, with ``T`` = -ln(clip(x)) (``neg_log``) or the identity.

    Args:
        in_chans: number of image channels.
        transform: ``neg_log`` or ``identity``.
    """

    def __init__(self, in_chans: int, transform: str = "neg_log") -> None:
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"input_transform: got {transform!r}, expected one of {list(TRANSFORMS)}")
        self.transform = transform
        self.register_buffer("mean", torch.zeros(in_chans))
        self.register_buffer("std", torch.ones(in_chans))

    @torch.no_grad()
    def fit(self, images: np.ndarray, rows: np.ndarray, chunk_size: int = 512) -> InputNormalizer:
        """Set per-channel mean and std of the transformed ``images[rows]``, read chunk-wise (memmap-friendly)."""
        total = np.zeros(self.mean.numel())
        squares = np.zeros(self.mean.numel())
        count = 0
        for start in range(0, len(rows), chunk_size):
            chunk = np.asarray(images[np.sort(rows[start : start + chunk_size])], dtype=np.float64)
            values = _attenuation(chunk, self.transform)
            total += values.sum(axis=(0, 2, 3))
            squares += (values**2).sum(axis=(0, 2, 3))
            count += values.shape[0] * values.shape[2] * values.shape[3]
        if count == 0:
            raise ValueError("InputNormalizer.fit: no training images")
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(np.where(std > 0, std, 1.0), dtype=self.std.dtype))
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Normalise a (B, C, H, W) batch."""
        return (_attenuation(x, self.transform) - self.mean[:, None, None]) / self.std[:, None, None]
