"""The beam's drift test: a likelihood ratio against the model's instrument, chi-square threshold."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from alloy_mtl.physics.beam_drift import beam_drift
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

REFERENCE = SimulationConfig(seed=11, n_images=60, image_size=16, imbalance_ratio=1.0, images_per_specimen=3)


@cache
def _batch(seed: int, **changes: float) -> np.ndarray:
    return simulate_dataset(dataclasses.replace(REFERENCE, seed=seed, **changes))[0]


def test_a_batch_from_the_reference_instrument_raises_no_alarm_and_one_alloy_is_not_drift():
    mixed = beam_drift(_batch(21), REFERENCE)
    one_alloy = beam_drift(_batch(22, class_order=("7075",) * 1, min_images_per_class=60), REFERENCE)
    for result in (mixed, one_alloy):
        assert not result.alarm and result.statistic < result.threshold
        assert result.df == 4 and result.threshold == pytest.approx(18.47, abs=0.01)
        assert result.fitted["kv_scale"] == pytest.approx(1.0, abs=0.01)


def test_a_2_percent_kv_raises_the_alarm_and_names_the_setting():
    result = beam_drift(_batch(23, kv=(40.8, 51.0, 81.6)), REFERENCE)
    assert result.alarm and result.statistic > 10 * result.threshold
    assert result.fitted["kv_scale"] > 1.005 and "kv_scale" in result.moved()  # on the hardening ridge


def test_0_3_mm_more_filtration_raises_the_alarm():
    # filtration, CsI and scatter all harden the beam: the fit may name another setting on that ridge
    result = beam_drift(_batch(23, al_filter_mm=1.3), REFERENCE)
    assert result.alarm and result.statistic > 10 * result.threshold and result.moved()


def test_bad_settings_are_all_named_before_any_fit():
    with pytest.raises(ValueError) as err:
        beam_drift(
            _batch(21), REFERENCE, search_ranges={"blur_sigma_px": (0.5, 1.0), "kv_scale": (1.01, 1.05)}
        )
    assert "blur_sigma_px: not a fitted setting" in str(err.value)
    assert "kv_scale: range 1.01..1.05 does not contain the reference's 1.0" in str(err.value)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        beam_drift(_batch(21), REFERENCE, alpha=1.0)
    with pytest.raises(ValueError, match="non-empty"):
        beam_drift(_batch(21)[:0], REFERENCE)
