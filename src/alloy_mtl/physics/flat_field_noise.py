"""The detector's noise levels and blur from a lab's flat fields (open-beam exposures, nothing in the beam).

A calibration specimen's radiographs pin down the beam (tube voltage, filtration, CsI, scatter) but say little
about the noise: the photon level, the blur and the exposure-to-exposure level changes hide in the wedge's own
signal. A stack of flat fields shows them directly. The frames are raw exposures on any common scale (16-bit
counts of a flat panel, open beam well below saturation); every estimate below is relative, so the panel's
static gain map and the counts' scale cancel.

From N >= 3 frames (N, C, H, W), dead pixels (0 in any frame) left out:

* per-exposure level: each frame's mean per channel relative to the channel's mean frame. The detector gain is
  one factor per exposure on every channel (``gain_sigma``), the tube current one per channel
  (``drift``): their covariance across channels is the gain's variance, the rest of each channel's variance
  the drift's;
* anode heel wander (``heel_jitter``): the slope of each frame's row profile about the mean profile, along the
  anode-cathode axis (the image height), relative to the nominal heel amplitude ``config.heel``;
* noise: what is left per pixel once the mean frame, the frame's level and its row profile are removed. Its
  correlation between neighbouring pixels gives the detector blur (a Gaussian PSF of ``blur_sigma_px``
  correlates white photon noise by a known amount), its variance then the photons per pixel
  (``dose``: variance = the spectrum's open-beam variance per photon x the blur's variance factor / dose).

The blur so measured is held in the instrument fit (``calibrate_instrument(known=...)``) and so is the noise
variance: the photons per pixel then follow each spectrum the fit tries (``noise_variance=...``), since the
same noise means fewer photons behind a thicker scintillator. The level and heel terms become the simulator's
(``resolve_generation``). Not measured here: the dark offsets
(``offset_sigma``: dark frames stored as unsigned integers lose their negative half) and the residual fixed
pattern a flat-field correction leaves (it needs flats from two sessions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from alloy_mtl.physics.simulator import SimulationConfig, blur_kernel, channel_weights

__all__ = [
    "LEVEL_FIELDS",
    "MIN_FRAMES",
    "MIN_LEVEL_FRAMES",
    "MIN_SIZE_PX",
    "FlatFieldNoise",
    "dose_scale_for",
    "flat_field_noise",
    "flat_field_problems",
    "frame_bootstrap",
    "noise_correlation",
    "pinned_down",
]

MIN_FRAMES = 3
MIN_SIZE_PX = 24
MIN_LEVEL_FRAMES = 20
"""Frames needed before the exposure-to-exposure terms (drift, gain, heel) are used: one value per frame each."""
LEVEL_FIELDS = ("drift", "gain_sigma", "heel_jitter")
"""Simulator fields the flat fields set (beside the instrument's ``dose_scale`` and ``blur_sigma_px``)."""
_MAX_BLUR_PX = 5.0
_BOOTSTRAP = 200
_BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class FlatFieldNoise:
    """Noise levels measured on flat fields (see the module docstring).

    Attributes:
        n_frames: flat fields used.
        dose_scale: photons per pixel relative to the nominal ``config.dose`` (mean over channels).
        channel_dose: photons per pixel per channel (under ``config``'s spectrum).
        noise_variance: per channel, the open beam's relative photon-noise variance before the blur: what the
            frames measure. Photons per pixel follow from it only with the spectrum (:func:`dose_scale_for`).
        blur_sigma_px: the detector blur that correlates the noise as observed.
        noise_correlation: the observed correlation of the noise between neighbouring pixels.
        drift: relative sd of each channel's exposure level (tube current).
        gain_sigma: relative sd of the exposure level common to every channel (detector gain).
        heel_jitter: sd of the row-profile slope per exposure, relative to the nominal heel amplitude.
        intervals: per level field, the 95 % bootstrap interval over frames.
        open_level: the frames' mean level per channel, on their own scale (the dark frames' reference).
    """

    n_frames: int
    dose_scale: float
    channel_dose: tuple[float, ...]
    noise_variance: tuple[float, ...]
    blur_sigma_px: float
    noise_correlation: float
    drift: float
    gain_sigma: float
    heel_jitter: float
    intervals: dict[str, tuple[float, float]]
    open_level: tuple[float, ...] = ()

    def identifiable(self, name: str) -> bool:
        """Whether the frames pin a level field down (:func:`pinned_down`); where not, the configured value
        stays."""
        return pinned_down(self.n_frames, getattr(self, name), *self.intervals[name])

    def instrument(self) -> dict[str, float]:
        """The instrument settings held fixed in the calibration's fit (the dose follows its spectrum)."""
        return {"blur_sigma_px": self.blur_sigma_px}

    def levels(self) -> dict[str, float]:
        """The simulator's per-exposure level fields (:data:`LEVEL_FIELDS`) the frames pin down."""
        return {name: getattr(self, name) for name in LEVEL_FIELDS if self.identifiable(name)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (the calibrated instrument's ``flat_fields``): ``levels`` holds what generation
        uses, ``measured`` every estimate with its interval and verdict."""
        return {
            "n_frames": self.n_frames,
            "blur_sigma_px": self.blur_sigma_px,
            "dose_scale": self.dose_scale,
            "noise_variance": list(self.noise_variance),
            "levels": self.levels(),
            "measured": {
                name: {
                    "value": getattr(self, name),
                    "low": self.intervals[name][0],
                    "high": self.intervals[name][1],
                    "identifiable": self.identifiable(name),
                }
                for name in LEVEL_FIELDS
            },
            "channel_dose": list(self.channel_dose),
            "open_level": list(self.open_level),
            "noise_correlation": self.noise_correlation,
        }


def dose_scale_for(config: SimulationConfig, noise_variance: Sequence[float]) -> float:
    """Photons per pixel relative to ``config.dose`` that give the measured relative noise variance per channel
    under ``config``'s spectrum (the mean over channels): a thicker scintillator or a harder beam means
    fewer photons for the same noise."""
    return float(_channel_dose(config, noise_variance).mean() / config.dose)


def _channel_dose(config: SimulationConfig, noise_variance: Sequence[float]) -> np.ndarray:
    """Photons per pixel per channel: the open beam's variance per photon under ``config``'s spectrum over the
    measured relative noise variance."""
    open_var = channel_weights(config, config.kv).var.sum(axis=1)
    return open_var / np.asarray(noise_variance, dtype=float)


def pinned_down(n_frames: int, value: float, low: float, high: float) -> bool:
    """Whether a per-exposure term measured on ``n_frames`` frames is pinned down: ``MIN_LEVEL_FRAMES`` frames or
    more and a 95 % interval ``[low, high]`` no wider than half the value (from fewer frames the bootstrap
    interval itself is not to be trusted: 10 flats missed the true drift)."""
    return bool(
        n_frames >= MIN_LEVEL_FRAMES
        and math.isfinite(low)
        and math.isfinite(high)
        and value > 0
        and high - low <= 0.5 * value
    )


def frame_bootstrap(statistic: Callable[[np.ndarray], Any], n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % bootstrap interval over frames of ``statistic`` (called with the resampled frame indices)."""
    rng = np.random.default_rng(_BOOTSTRAP_SEED)
    draws = np.array([statistic(pick) for pick in rng.integers(0, n_frames, (_BOOTSTRAP, n_frames))])
    low, high = np.nanquantile(draws, [0.025, 0.975], axis=0)
    return low, high


def noise_correlation(sigma_px: float) -> float:
    """Correlation between neighbouring pixels of white noise blurred by a Gaussian of ``sigma_px``."""
    if sigma_px <= 0:
        return 0.0
    kernel = blur_kernel(sigma_px)
    return float(np.sum(kernel[:-1] * kernel[1:]) / np.sum(kernel**2))


def _blur_from_correlation(rho: float) -> float:
    if rho <= 0:
        return 0.0
    if rho >= noise_correlation(_MAX_BLUR_PX):
        return _MAX_BLUR_PX
    return float(brentq(lambda s: noise_correlation(s) - rho, 1e-3, _MAX_BLUR_PX, xtol=1e-4))


def flat_field_problems(flats: np.ndarray, config: SimulationConfig) -> list[str]:
    """Every reason ``flats`` (N, C, H, W) cannot be measured for ``config``'s channels (empty: none)."""
    problems = []
    n_ch = len(config.kv)
    if flats.ndim != 4 or flats.shape[1] != n_ch:
        problems.append(
            f"expected frames of shape (N, {n_ch}, H, W) for kv={config.kv_label}, got {flats.shape}"
        )
        return problems
    if min(flats.shape[2:]) < MIN_SIZE_PX:
        problems.append(
            f"frames of {flats.shape[2]} x {flats.shape[3]} px; at least {MIN_SIZE_PX} px each way are needed to "
            "read the blur inside its border (16 px frames put photons per pixel 10-40 % off)"
        )
    if flats.shape[0] < MIN_FRAMES:
        problems.append(f"{flats.shape[0]} frame(s); at least {MIN_FRAMES} are needed")
    if not np.all(np.isfinite(flats)):
        problems.append("frames hold NaN or infinite values")
    elif flats.size and not np.any(np.all(flats > 0, axis=(0, 1))):
        problems.append("no pixel reads above 0 in every frame (dark frames, not flat fields?)")
    return problems


def flat_field_noise(flats: np.ndarray, config: SimulationConfig) -> FlatFieldNoise:
    """Measure the noise levels and blur of the detector that took ``flats`` (see the module docstring).

    Args:
        flats: (N, C, H, W) open-beam exposures, N >= 3, on any common scale.
        config: the instrument (its spectrum gives the open-beam variance per photon; ``heel`` the nominal
            heel amplitude; ``dose`` the reference of ``dose_scale``), e.g. the calibrated one.

    Raises:
        ValueError: naming every problem with the frames.
    """
    frames = np.asarray(flats, dtype=np.float64)
    problems = flat_field_problems(frames, config)
    if problems:
        raise ValueError("flat fields: " + "; ".join(problems))
    n, n_ch, height, _ = frames.shape
    valid = np.all(frames > 0, axis=(0, 1))  # (H, W): dead pixels read 0
    level = np.array([[frame[valid].mean() for frame in channels] for channels in frames])  # (N, C)

    # each frame relative to its level and to the mean frame: the panel's pixel gain map cancels
    normalised = np.where(valid, frames / level[:, :, None, None], np.nan)
    ratio = normalised / normalised.mean(axis=0) - 1.0
    row_deviation = np.nanmean(ratio, axis=3)  # (N, C, H)
    ramp = (np.arange(height) + 0.5) / height - 0.5
    x = ramp / (1.0 + config.heel * ramp)
    slopes = row_deviation @ x / float(x @ x)  # (N, C)
    estimates = _levels(level, slopes, config.heel)
    low, high = frame_bootstrap(lambda pick: _levels(level[pick], slopes[pick], config.heel), n)

    # the heel's fitted slope, not each frame's row means: those would take a share of the noise with them
    residual = ratio - (slopes[:, :, None] * x)[..., None]
    residual *= math.sqrt(n / (n - 1))  # the mean frame took one degree of freedom per pixel
    blur, rho, variance = 0.0, 0.0, np.ones(n_ch)
    for _ in range(2):  # the blur spreads differently at the border: leave out 3 sd of it (at most 1/4)
        border = min(int(math.ceil(3 * blur)) + 1, height // 4)
        inner = residual[..., border : height - border, border : residual.shape[3] - border]
        variance = np.nanmean(inner**2, axis=(0, 2, 3))  # (C,)
        lag = [
            np.nanmean(inner[..., :, 1:] * inner[..., :, :-1], axis=(0, 2, 3)),
            np.nanmean(inner[..., 1:, :] * inner[..., :-1, :], axis=(0, 2, 3)),
        ]
        rho = float(np.mean(np.mean(lag, axis=0) / variance))
        blur = _blur_from_correlation(rho)
    blur_factor = float(np.sum(blur_kernel(blur) ** 2)) ** 2 if blur > 0 else 1.0
    noise_variance = variance / blur_factor
    channel_dose = _channel_dose(config, noise_variance)
    return FlatFieldNoise(
        n_frames=n,
        dose_scale=float(channel_dose.mean() / config.dose),
        channel_dose=tuple(float(d) for d in channel_dose),
        noise_variance=tuple(float(v) for v in noise_variance),
        blur_sigma_px=blur,
        noise_correlation=rho,
        **{name: float(value) for name, value in zip(LEVEL_FIELDS, estimates, strict=True)},
        intervals={name: (float(a), float(b)) for name, a, b in zip(LEVEL_FIELDS, low, high, strict=True)},
        open_level=tuple(float(v) for v in level.mean(axis=0)),
    )


def _levels(level: np.ndarray, slopes: np.ndarray, heel: float) -> tuple[float, float, float]:
    """(drift, gain_sigma, heel_jitter) from the frames' levels (N, C) and heel slopes (N, C)."""
    relative = level / level.mean(axis=0) - 1.0
    covariance = np.atleast_2d(np.cov(relative, rowvar=False))
    off_diagonal = covariance[~np.eye(covariance.shape[0], dtype=bool)]
    gain_var = max(float(off_diagonal.mean()), 0.0) if off_diagonal.size else 0.0
    drift_var = max(float(np.diag(covariance).mean()) - gain_var, 0.0)
    heel_jitter = float(np.std(slopes, ddof=1) / heel) if heel > 0 else math.nan
    return math.sqrt(drift_var), math.sqrt(gain_var), heel_jitter
