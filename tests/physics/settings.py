"""Simulator settings shared by the physics tests."""

DETECTOR_NOISE_FREE = dict(
    dose=float("inf"),
    drift=0.0,
    heel_jitter=0.0,
    gain_sigma=0.0,
    offset_sigma=0.0,
    fixed_pattern_gain_sigma=0.0,
    fixed_pattern_offset_sigma=0.0,
    dead_pixel_fraction=0.0,
)
"""No photon noise and no exposure or detector nuisances (scatter and blur stay on)."""
