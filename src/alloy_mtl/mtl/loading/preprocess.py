"""The one preprocessing of the project: bad-pixel correction, then the resize to a model's input size.

Every detector has dead pixels (they read 0) and some hot ones, each unit in other places. A model that sees
them learns where they are on its training detector; one that never sees them cannot. Labs correct them before
anything else, from their neighbours; so does this project, in the same order everywhere a model meets
radiographs: training (``ArrayTaskDataset`` and ``DeviceBatches``), evaluation, the MLflow model and folder
inference all call :func:`prepare_images` with the bad-pixel method the model was trained with (its bundle's
``preprocessing``).

``neighbour_median``: a pixel of a channel is bad when it is not finite, reads <= 0, or differs from the median
of its eight neighbours by more than ``threshold`` times that median (50% by default; photon noise is about 1%
and the wedge changes by a few percent per pixel, so only defects go that far); a bad pixel gets that median.
The bad-pixel map is found in each image itself, so a detector the model never saw is corrected the same way.
A one-pixel-wide real feature would be taken for a defect; radiographs of plates have none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from alloy_mtl.mtl.loading.resize import resize_images

#: Bad-pixel methods: ``none`` leaves pixels as they are (models trained before the correction existed).
BAD_PIXEL_METHODS = ("none", "neighbour_median")
BAD_PIXEL_THRESHOLD = 0.5


def neighbour_median(images: Tensor) -> Tensor:
    """Median of each pixel's valid neighbours among its eight (edges replicated; non-finite and <= 0 values
    left out), per image and channel: (..., H, W). A pixel without a valid neighbour gets its channel's median.
    """
    shape = images.shape
    flat = images.reshape(-1, 1, shape[-2], shape[-1])
    flat = torch.where(torch.isfinite(flat) & (flat > 0), flat, torch.full_like(flat, float("nan")))
    padded = F.pad(flat, (1, 1, 1, 1), mode="replicate")
    patches = F.unfold(padded, kernel_size=3)  # (B, 9, H*W)
    neighbours = torch.cat([patches[:, :4], patches[:, 5:]], dim=1)
    ordered = neighbours.sort(dim=1).values  # NaN last
    valid = (~torch.isnan(neighbours)).sum(dim=1, keepdim=True)
    low = ordered.gather(1, ((valid - 1) // 2).clamp_min(0))
    high = ordered.gather(1, (valid // 2).clamp(max=7))
    median = (0.5 * (low + high)).squeeze(1)
    fallback = torch.nan_to_num(flat.reshape(flat.shape[0], -1).nanmedian(dim=1).values, nan=0.0)
    median = torch.where(valid.squeeze(1) > 0, median, fallback[:, None])
    return median.reshape(shape)


def _bad_and_median(images: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    median = neighbour_median(images)
    deviates = (images - median).abs() > threshold * median.abs()
    return ~torch.isfinite(images) | (images <= 0) | deviates, median


def bad_pixel_mask(images: Tensor, threshold: float = BAD_PIXEL_THRESHOLD) -> Tensor:
    """True where a pixel of (..., H, W) images (at least 3 x 3) is bad (see the module docstring)."""
    return _bad_and_median(images, threshold)[0]


def correct_bad_pixels(images: Tensor, threshold: float = BAD_PIXEL_THRESHOLD) -> Tensor:
    """(..., H, W) float images with every bad pixel replaced by the median of its eight neighbours (images
    smaller than 3 x 3 are returned as they are)."""
    if images.shape[-1] < 3 or images.shape[-2] < 3:
        return images
    bad, median = _bad_and_median(images, threshold)
    return torch.where(bad, median, images)


def check_bad_pixels(method: str) -> str:
    """``method`` if it is one of :data:`BAD_PIXEL_METHODS`.

    Raises:
        ValueError: naming the method and the choices.
    """
    if method not in BAD_PIXEL_METHODS:
        raise ValueError(f"bad_pixels: got {method!r}, expected one of {list(BAD_PIXEL_METHODS)}")
    return method


def bundle_bad_pixels(bundle: Mapping[str, Any]) -> str:
    """The bad-pixel method a trained bundle (or an MLflow model's metadata) was trained with (old: none)."""
    preprocessing = bundle.get("preprocessing") or {}
    return check_bad_pixels(str(preprocessing.get("bad_pixels", "none")))


def prepare_images(images: Tensor, size: int | None, bad_pixels: str = "none") -> Tensor:
    """(..., C, H, W) float radiographs as a model takes them: bad pixels corrected, then resized to ``size``
    (None: kept)."""
    if check_bad_pixels(bad_pixels) == "neighbour_median":
        images = correct_bad_pixels(images)
    return images if size is None else resize_images(images, size)
