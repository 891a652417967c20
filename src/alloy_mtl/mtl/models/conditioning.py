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
and DDP; :meth:`MultiTaskModel.encode` splits them off again, and :class:`InstrumentConditioning` joins the
standardised settings to the backbone's features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from alloy_mtl.mtl.models.backbones import make_activation

__all__ = ["InstrumentConditioning", "attach_settings", "split_settings"]


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
    """Joins standardised instrument settings to the backbone's features: ``act(W [features, z] + b)``.

    Args:
        keys: the instrument settings the model reads, in order (e.g. ``kv_scale``, ``al_filter_mm``).
        num_features: the backbone's feature size F (the output keeps it, so heads and FDS are unchanged).
        activation: the heads' activation.

    The standardisation (``mean``, ``std`` buffers) is set from the training images' settings by :meth:`fit`
    or comes with a loaded ``state_dict``.
    """

    def __init__(self, keys: Sequence[str], num_features: int, activation: str) -> None:
        super().__init__()
        if not keys:
            raise ValueError("instrument conditioning: expected at least one instrument key")
        self.keys = list(keys)
        self.register_buffer("mean", torch.zeros(len(self.keys)))
        self.register_buffer("std", torch.ones(len(self.keys)))
        self.fusion = nn.Sequential(
            nn.Linear(num_features + len(self.keys), num_features), make_activation(activation)
        )

    @torch.no_grad()
    def fit(self, settings: np.ndarray) -> InstrumentConditioning:
        """Standardise by the mean and std of the training images' settings (N, K); a constant key keeps std 1."""
        values = np.asarray(settings, dtype=np.float64)
        std = values.std(axis=0)
        self.mean.copy_(torch.as_tensor(values.mean(axis=0), dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(np.where(std > 0, std, 1.0), dtype=self.std.dtype))
        return self

    def forward(self, features: Tensor, settings: Tensor) -> Tensor:
        """Features (B, F) joined with the settings (B, K) of each image: (B, F)."""
        standard = (settings.to(features.dtype) - self.mean.to(features.dtype)) / self.std.to(features.dtype)
        return self.fusion(torch.cat([features, standard], dim=1))

    def typical(self) -> dict[str, float]:
        """The training images' mean settings: the instrument assumed when a request names none."""
        return {key: float(value) for key, value in zip(self.keys, self.mean.tolist(), strict=True)}
