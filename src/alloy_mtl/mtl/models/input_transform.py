"""Input normalisation that travels with the model: raw transmission I/I0 in, standardised attenuation out.

Radiographs carry the alloy in small relative differences of -ln(I/I0) across energy channels and along the
wedge; a CNN sees them far better as standardised attenuation than as raw intensities near 1. The statistics
are buffers of the model, so a saved model applies the same transform at inference time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

#: Input representations, computed inside the model from the transmission ``x = I/I0``:
#: ``neg_log`` the attenuation ``A = -ln x`` per channel; ``log_attenuation`` its logarithm ``ln A`` (the
#: thickness becomes an additive offset shared by every channel); ``dual_energy`` ``A`` plus every channel
#: pair's log-ratio ``ln A_i - ln A_j``, the thickness-free material signal of dual-energy radiography;
#: ``wedge_profile`` ``A`` plus, per channel, its profile along the wedge (the image width: the mean over rows,
#: which averages the photon noise down) and that profile's gradient, ``mu`` times the wedge slope: free of the
#: per-exposure gain and offset that hide the absolute level (each broadcast over the rows, so a CNN keeps a 2-D
#: input); ``wedge_fit`` ``A`` plus, per channel, the least-squares quadratic through that profile and the fit's
#: gradient: every pixel of the image enters each value, so a detector's per-pixel residual pattern and dead
#: pixels (which the column profile and its neighbour differences carry one column at a time) average out, and a
#: model cannot learn its training detector from them; ``identity`` the raw transmission.
TRANSFORMS = ("neg_log", "log_attenuation", "dual_energy", "wedge_profile", "wedge_fit", "identity")
WEDGE_FIT_DEGREE = 2
_EPS = 1e-4
_MIN_ATTENUATION = 1e-3


def output_channels(in_chans: int, transform: str) -> int:
    """Channels a transform produces from ``in_chans`` image channels."""
    if transform == "dual_energy":
        return in_chans + in_chans * (in_chans - 1) // 2
    if transform in ("wedge_profile", "wedge_fit"):
        return 3 * in_chans
    return in_chans


def represent(x: Tensor, transform: str) -> Tensor:
    """The representation ``transform`` of a (B, C, H, W) transmission batch (see :data:`TRANSFORMS`)."""
    if transform == "identity":
        return x
    attenuation = -torch.log(x.clamp_min(_EPS))
    if transform == "neg_log":
        return attenuation
    if transform in ("wedge_profile", "wedge_fit"):
        profile = attenuation.mean(dim=2, keepdim=True)
        if transform == "wedge_fit":
            profile, gradient = _quadratic_fit(profile)
        else:
            gradient = torch.gradient(profile, dim=3)[0] if x.shape[3] > 1 else torch.zeros_like(profile)
        rows = x.shape[2]
        return torch.cat(
            [attenuation, profile.expand(-1, -1, rows, -1), gradient.expand(-1, -1, rows, -1)], dim=1
        )
    log_attenuation = torch.log(attenuation.clamp_min(_MIN_ATTENUATION))
    if transform == "log_attenuation":
        return log_attenuation
    pairs = torch.combinations(torch.arange(x.shape[1], device=x.device), r=2)
    ratios = log_attenuation[:, pairs[:, 0]] - log_attenuation[:, pairs[:, 1]]
    return torch.cat([attenuation, ratios], dim=1)


def _design(width: int, like: Tensor) -> tuple[Tensor, Tensor, int]:
    """(position (W,), design matrix (W, degree + 1), degree) of the wedge fit for ``width`` pixels."""
    degree = min(WEDGE_FIT_DEGREE, width - 1)
    position = torch.linspace(-1.0, 1.0, width, dtype=like.dtype, device=like.device)
    return position, position[:, None] ** torch.arange(degree + 1, device=like.device), degree


def wedge_coefficients(x: Tensor) -> Tensor:
    """(B, C * (WEDGE_FIT_DEGREE + 1)) coefficients of the least-squares quadratic through each channel's
    attenuation profile along the wedge (position -1..1 across the width), of a (B, C, H, W) transmission batch;
    zero-padded where the image is too narrow for the full degree."""
    profile = (-torch.log(x.clamp_min(_EPS))).mean(dim=2, keepdim=True)
    _, design, degree = _design(x.shape[-1], profile)
    coefficients = (profile @ torch.linalg.pinv(design).T)[:, :, 0, :]  # (B, C, degree + 1)
    padded = torch.nn.functional.pad(coefficients, (0, WEDGE_FIT_DEGREE - degree))
    return padded.flatten(1)


def _quadratic_fit(profile: Tensor) -> tuple[Tensor, Tensor]:
    """The least-squares polynomial (degree ``WEDGE_FIT_DEGREE``, lower for narrow images) through each
    (B, C, 1, W) profile, and its derivative per pixel, both (B, C, 1, W)."""
    width = profile.shape[-1]
    position, design, degree = _design(width, profile)
    powers = torch.arange(degree + 1, device=profile.device)
    coefficients = profile @ torch.linalg.pinv(design).T  # (B, C, 1, degree + 1)
    fitted = coefficients @ design.T
    if degree == 0:
        return fitted, torch.zeros_like(fitted)
    slope_design = powers[1:] * position[:, None] ** (powers[1:] - 1)  # d/dposition of each power
    pixel = 2.0 / (width - 1)  # position units per pixel
    gradient = (coefficients[..., 1:] @ slope_design.T) * pixel
    return fitted, gradient


def training_batches(
    images: np.ndarray,
    rows: np.ndarray,
    chunk_size: int,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    dtype: type = np.float32,
) -> Iterator[Tensor]:
    """``images[rows]`` chunk by chunk (sorted rows, memmap-friendly), each through ``preprocess`` when given."""
    for start in range(0, len(rows), chunk_size):
        batch = torch.from_numpy(np.asarray(images[np.sort(rows[start : start + chunk_size])], dtype=dtype))
        yield batch if preprocess is None else preprocess(batch)


class InputNormalizer(nn.Module):
    """``(T(x) - mean) / std`` per output channel, ``T`` one of :data:`TRANSFORMS` (:func:`represent`).

    Args:
        in_chans: number of image channels.
        transform: the input representation.
    """

    def __init__(self, in_chans: int, transform: str = "neg_log") -> None:
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"input_transform: got {transform!r}, expected one of {list(TRANSFORMS)}")
        self.transform = transform
        self.out_chans = output_channels(in_chans, transform)
        self.register_buffer("mean", torch.zeros(self.out_chans))
        self.register_buffer("std", torch.ones(self.out_chans))

    @torch.no_grad()
    def fit(
        self,
        images: np.ndarray,
        rows: np.ndarray,
        chunk_size: int = 512,
        preprocess: Callable[[Tensor], Tensor] | None = None,
    ) -> InputNormalizer:
        """Set per-channel mean and std of the transformed ``images[rows]``, read chunk-wise (memmap-friendly),
        each chunk first passed through ``preprocess`` (the model's bad-pixel correction) when given."""
        total = np.zeros(self.mean.numel())
        squares = np.zeros(self.mean.numel())
        count = 0
        for batch in training_batches(images, rows, chunk_size, preprocess, np.float64):
            values = represent(batch, self.transform).numpy()
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
        return (represent(x, self.transform) - self.mean[:, None, None]) / self.std[:, None, None]
