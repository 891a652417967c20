"""Instrument conditioning: the model reads the instrument's settings beside the radiograph.

Inside the declared tolerances a harder beam (higher kV, more filtration, a thicker scintillator, more scatter)
moves every alloy's attenuation by as much as the alloys differ from one another, so one radiograph alone
cannot tell the alloy once the beam is unknown (docs/results.md#instrument-robustness). The instrument is
shared by every radiograph a lab takes in one session, so it can be fitted from a batch of them (the
physics-limit estimator's joint fit, no labels) or calibrated from reference radiographs. A conditioned model
is trained on images whose instrument settings are recorded (the generator's drawn settings) and told, at
prediction time, the instrument the images come from.

The settings travel with the images as ``K`` constant planes appended to each image's channels
(:func:`attach_settings`), so a batch stays one tensor through the loaders, the trainer, the gradient methods
and DDP; :meth:`MultiTaskModel.encode` splits them off again and its fusion layer joins the standardised
settings (:class:`InstrumentConditioning`), and optionally the wedge's global summary (:class:`WedgeSummary`),
to the backbone's features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from alloy_mtl.mtl.models.input_transform import WEDGE_FIT_DEGREE, training_batches, wedge_coefficients

__all__ = ["InstrumentConditioning", "WedgeSummary", "attach_settings", "split_settings"]


def attach_settings(images: Tensor, settings: Tensor) -> Tensor:
    """Images (B, C, H, W) with each image's settings (B, K) appended as K constant planes: (B, C + K, H, W)."""
    if settings.ndim != 2 or settings.shape[0] != images.shape[0]:
        raise ValueError(
            f"instrument settings must be (images, keys) = ({images.shape[0]}, K), got {tuple(settings.shape)}"
        )
    planes = settings.to(images.dtype)[:, :, None, None].expand(-1, -1, images.shape[2], images.shape[3])
    return torch.cat([images, planes], dim=1)


def split_settings(x: Tensor, n_keys: int) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`attach_settings`: (images (B, C, H, W), settings (B, K))."""
    return x[:, :-n_keys], x[:, -n_keys:, 0, 0]


class InstrumentConditioning(nn.Module):
    """The instrument settings a model reads, standardised: ``(settings - mean) / std`` per key.

    Args:
        keys: the instrument settings the model reads, in order (e.g. ``kv_scale``, ``al_filter_mm``).

    The standardisation (``mean``, ``std`` buffers) is set from the training images' settings by :meth:`fit`
    or comes with a loaded ``state_dict``; the model joins the result to its features (``MultiTaskModel.fusion``).
    """

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__()
        if not keys:
            raise ValueError("instrument conditioning: expected at least one instrument key")
        self.keys = list(keys)
        self.register_buffer("mean", torch.zeros(len(self.keys)))
        self.register_buffer("std", torch.ones(len(self.keys)))

    @torch.no_grad()
    def fit(self, settings: np.ndarray) -> InstrumentConditioning:
        """Standardise by the mean and std of the training images' settings (N, K); a constant key keeps std 1."""
        values = np.asarray(settings, dtype=np.float64)
        std = values.std(axis=0)
        self.mean.copy_(torch.as_tensor(values.mean(axis=0), dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(np.where(std > 0, std, 1.0), dtype=self.std.dtype))
        return self

    def forward(self, settings: Tensor) -> Tensor:
        """Standardised settings (B, K)."""
        return (settings.float() - self.mean.float()) / self.std.float()

    def typical(self) -> dict[str, float]:
        """The training images' mean settings: the instrument assumed when a request names none."""
        return {key: float(value) for key, value in zip(self.keys, self.mean.tolist(), strict=True)}


class WedgeSummary(nn.Module):
    """The least-squares quadratic through each channel's attenuation profile along the wedge, as its
    coefficients (B, 3C), standardised: a global, every-pixel summary of the radiograph that the model's
    fusion layer reads beside the backbone's features (a CNN's pooled features carry absolute attenuation
    levels poorly, and inside the tolerances the alloy is in their exact values).

    Args:
        in_chans: image channels.
    """

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.size = in_chans * (WEDGE_FIT_DEGREE + 1)
        self.register_buffer("mean", torch.zeros(self.size))
        self.register_buffer("std", torch.ones(self.size))

    @torch.no_grad()
    def fit(
        self,
        images: np.ndarray,
        rows: np.ndarray,
        preprocess: Callable[[Tensor], Tensor] | None = None,
        chunk_size: int = 512,
    ) -> WedgeSummary:
        """Standardise by the coefficients' mean and std over the training ``images[rows]`` (chunk-wise, each
        chunk through ``preprocess``, the model's bad-pixel correction, when given)."""
        parts = [
            wedge_coefficients(batch).double()
            for batch in training_batches(images, rows, chunk_size, preprocess)
        ]
        if not parts:
            raise ValueError("WedgeSummary.fit: no training images")
        values = torch.cat(parts)
        std = values.std(dim=0, unbiased=False)
        self.mean.copy_(values.mean(dim=0).to(self.mean.dtype))
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)).to(self.std.dtype))
        return self

    def forward(self, images: Tensor) -> Tensor:
        """Standardised coefficients (B, 3C) of raw transmission images (B, C, H, W)."""
        return (wedge_coefficients(images.float()) - self.mean.float()) / self.std.float()
