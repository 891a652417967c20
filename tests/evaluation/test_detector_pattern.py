"""The detector test of the drift alarm: the fixed pattern a batch shares with the reference detector."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from alloy_mtl.evaluation.detector_pattern import fit_pattern_reference, pattern_check
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

CONFIG = SimulationConfig(seed=3, detector_seed=101, n_images=300, image_size=16, imbalance_ratio=1.0)


@cache
def _images(seed: int, detector_seed: int, **changes: float) -> np.ndarray:
    config = dataclasses.replace(CONFIG, seed=seed, detector_seed=detector_seed, n_images=100, **changes)
    return simulate_dataset(config)[0]


@cache
def _reference():
    return fit_pattern_reference(simulate_dataset(CONFIG)[0])


def test_a_batch_from_the_reference_detector_matches_its_pattern_whatever_the_beam():
    for images in (_images(7, 101), _images(8, 101, al_filter_mm=1.5)):
        check = pattern_check(_reference(), images)
        assert check.informative and not check.alarm
        assert check.similarity == pytest.approx(check.expected, abs=0.1) and check.similarity > 0.8


def test_another_detector_unit_raises_the_alarm():
    check = pattern_check(_reference(), _images(7, 202))
    assert check.alarm and abs(check.similarity) < 0.15


def test_a_detector_without_fixed_pattern_leaves_the_test_uninformative_so_it_never_alarms():
    flat = dataclasses.replace(CONFIG, fixed_pattern_gain_sigma=0.0, fixed_pattern_offset_sigma=0.0)
    reference = fit_pattern_reference(simulate_dataset(flat)[0])
    check = pattern_check(reference, _images(7, 202))
    assert not check.informative and not check.alarm


def test_dead_pixels_are_left_out_and_bad_shapes_are_named():
    images = _images(7, 101).copy()
    images[:, :, 0, 0] = 0.0
    assert np.isfinite(pattern_check(_reference(), images).similarity)
    with pytest.raises(ValueError, match=r"expected a batch of shape \(N, 3, 16, 16\)"):
        pattern_check(_reference(), images[:, :2])
    with pytest.raises(ValueError, match="at least 2 images"):
        fit_pattern_reference(images[:1])
