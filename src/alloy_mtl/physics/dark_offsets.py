"""The detector's per-exposure dark offset, measured on a lab's dark frames (tube off) against its flat fields.

A dark correction subtracts a master dark, but each exposure's offset wanders about it (``offset_sigma`` of the
simulator, in units of the open beam). Raw dark frames show that wander as the spread of their mean levels;
the flat fields on the same scale give the open beam's level to divide by. Each frame's mean also carries its
pixels' read noise over the pixel count, which is taken out (the per-pixel spread across frames holds both).
The 95 % interval is a bootstrap over frames; the value is used only with ``MIN_LEVEL_FRAMES`` frames or more and
an interval no wider than half of it, as the flat fields' level terms.

Dark frames need a pedestal: a raw panel's darks sit well above 0; frames already dark-corrected and stored as
unsigned integers have lost their negative half and are refused (a quarter or more of their pixels read 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alloy_mtl.physics.flat_field_noise import MIN_FRAMES, frame_bootstrap, pinned_down

__all__ = ["DarkOffsets", "dark_frame_problems", "dark_offsets"]

_MAX_ZERO_SHARE = 0.25


@dataclass(frozen=True)
class DarkOffsets:
    """The per-exposure dark offset measured on dark frames.

    Attributes:
        n_frames: dark frames used.
        offset_sigma: sd of each exposure's offset, relative to the open beam (``offset_sigma``).
        low, high: its 95 % bootstrap interval over frames.
    """

    n_frames: int
    offset_sigma: float
    low: float
    high: float

    @property
    def identifiable(self) -> bool:
        """Whether the frames pin the offset down (see the module docstring)."""
        return pinned_down(self.n_frames, self.offset_sigma, self.low, self.high)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (the calibrated instrument's ``dark_frames``)."""
        return {**asdict(self), "identifiable": self.identifiable}


def _offset(means: np.ndarray, read_var: np.ndarray, n_pixels: int, open_level: np.ndarray) -> float:
    """Offset sd (open-beam units, pooled over channels) from frame means (N, C) and per-pixel variances (C,)."""
    offset_var = np.maximum(means.var(axis=0, ddof=1) - read_var / n_pixels, 0.0)
    return math.sqrt(float(np.mean(offset_var / open_level**2)))


def dark_frame_problems(darks: np.ndarray, n_channels: int) -> list[str]:
    """Every reason ``darks`` (N, C, H, W, raw) cannot be measured with ``n_channels`` channels (empty: none)."""
    frames = np.asarray(darks)
    if frames.ndim != 4 or frames.shape[1] != n_channels:
        return [f"expected frames of shape (N, {n_channels}, H, W), got {frames.shape}"]
    problems = []
    if frames.shape[0] < MIN_FRAMES:
        problems.append(f"{frames.shape[0]} frame(s); at least {MIN_FRAMES} are needed")
    if not np.all(np.isfinite(frames)):
        problems.append("frames hold NaN or infinite values")
    elif np.mean(frames <= 0) >= _MAX_ZERO_SHARE:
        problems.append(
            f"{np.mean(frames <= 0):.0%} of the pixels read 0: dark frames without a pedestal (already "
            "dark-corrected and clipped at 0) have lost the offsets' negative half; give the raw darks"
        )
    return problems


def dark_offsets(darks: np.ndarray, open_level: Sequence[float]) -> DarkOffsets:
    """Measure the per-exposure dark offset of ``darks`` (N, C, H, W, raw, the flat fields' scale) relative to the
    open beam's raw level per channel ``open_level`` (``FlatFieldNoise.open_level``).

    Raises:
        ValueError: naming every problem with the frames.
    """
    frames = np.asarray(darks, dtype=np.float64)
    level = np.asarray(open_level, dtype=np.float64)
    problems = dark_frame_problems(frames, level.size)
    if not np.all(level > 0):
        problems.append(f"the open beam's level {level.tolist()} must be > 0 per channel")
    if problems:
        raise ValueError("dark frames: " + "; ".join(problems))
    n, _, height, width = frames.shape
    means = frames.mean(axis=(2, 3))  # (N, C)
    read_var = frames.var(axis=0, ddof=1).mean(axis=(1, 2))  # (C,): read noise and the offset's wander
    value = _offset(means, read_var, height * width, level)
    low, high = frame_bootstrap(lambda pick: _offset(means[pick], read_var, height * width, level), n)
    return DarkOffsets(n, value, float(low), float(high))
