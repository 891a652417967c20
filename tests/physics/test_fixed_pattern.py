"""The residual gain pattern a flat-field correction leaves, read off the calibration radiographs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from alloy_mtl.physics.alloys import get_alloy
from alloy_mtl.physics.fixed_pattern import residual_gain_pattern
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset


def _radiographs(pattern: float, n: int = 10, **changes: float) -> np.ndarray:
    config = dataclasses.replace(
        SimulationConfig(seed=3, image_size=32, images_per_specimen=1),
        fixed_pattern_gain_sigma=pattern,
        detector_seed=4242,
        **changes,
    )
    images, _ = simulate_dataset(config, materials=[(get_alloy("1050"), n)])
    return images


@pytest.mark.parametrize("level", [0.002, 0.005, 0.01])
def test_the_residual_gain_patterns_level_is_read_off_ten_wedge_radiographs(level: float) -> None:
    pattern = residual_gain_pattern(_radiographs(level))
    assert pattern.gain_sigma == pytest.approx(level, rel=0.05)
    assert pattern.identifiable and pattern.low <= level <= pattern.high
    assert pattern.to_dict()["identifiable"] is True


def test_no_pattern_reads_as_not_pinned_down_and_dead_pixels_do_not_make_one() -> None:
    pattern = residual_gain_pattern(_radiographs(0.0, dead_pixel_fraction=0.01))
    assert pattern.gain_sigma < 0.001 and pattern.low == 0.0
    assert not pattern.identifiable


def test_too_few_radiographs_or_bad_input() -> None:
    few = residual_gain_pattern(_radiographs(0.005, n=4))
    assert math.isnan(few.gain_sigma) and not few.identifiable
    with pytest.raises(ValueError, match=r"expected finite \(N, C, H, W\) images"):
        residual_gain_pattern(np.full((6, 3, 8, 8), np.nan))
