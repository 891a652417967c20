"""Per-image statistics computed chunk by chunk, so a memory-mapped array is never loaded whole."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

STAT_COLUMNS: tuple[str, ...] = ("mean", "std", "min", "max", "n_nonfinite", "shape")


def image_statistics(images: np.ndarray | Sequence[np.ndarray], chunk_size: int = 256) -> pd.DataFrame:
    """Mean, std, min, max over the finite pixels, the count of non-finite pixels, and the shape of each image.

    Args:
        images: an N x C x H x W array (may be a ``np.memmap``, read ``chunk_size`` images at a time), or a
            sequence of C x H x W arrays whose shapes may differ (checked before stacking).
        chunk_size: images read and reduced per step (float64 accumulation).

    Returns:
        One row per image with columns ``mean, std, min, max, n_nonfinite, shape`` (``shape`` a string such
        as ``"3x64x64"``); the statistics of an image without any finite pixel are NaN.
    """
    if chunk_size < 1:
        raise ValueError(f"image_statistics: chunk_size must be >= 1, got {chunk_size}")
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"image_statistics: expected an N x C x H x W array, got shape {images.shape}")
        chunks = (images[start : start + chunk_size] for start in range(0, len(images), chunk_size))
    else:
        chunks = (np.asarray(image)[None] for image in images)
    frames = [_chunk_statistics(chunk) for chunk in chunks]
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=float) for name in STAT_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def _chunk_statistics(chunk: np.ndarray) -> pd.DataFrame:
    """Statistics of each image of a chunk of equally shaped images."""
    flat = np.asarray(chunk, dtype=np.float64).reshape(len(chunk), -1)
    finite = np.isfinite(flat)
    has_finite = finite.any(axis=1)
    masked = np.ma.masked_array(flat, mask=~finite)
    stats = {
        name: np.where(has_finite, np.ma.filled(reduce(axis=1).astype(np.float64), np.nan), np.nan)
        for name, reduce in (
            ("mean", masked.mean),
            ("std", masked.std),
            ("min", masked.min),
            ("max", masked.max),
        )
    }
    shape = "x".join(str(d) for d in chunk.shape[1:])
    return pd.DataFrame({**stats, "n_nonfinite": (~finite).sum(axis=1), "shape": [shape] * len(chunk)})
