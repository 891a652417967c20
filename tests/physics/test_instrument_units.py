"""Instrument units and tolerances: a dataset imaged by many detectors and beams (domain randomisation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from alloy_mtl.constants import METADATA_COLUMNS
from alloy_mtl.physics.instrument import RECORDED_SETTINGS, parse_tolerances
from alloy_mtl.physics.simulator import SimulationConfig, plan_dataset, simulate_dataset

SMALL = dict(n_images=200, image_size=16, imbalance_ratio=2.0, min_images_per_class=8, images_per_specimen=2)
TOLERANCES = {"kv_scale": [0.97, 1.03], "al_filter_mm": [0.7, 1.3], "blur_sigma_px": [0.5, 1.0]}


def test_one_unit_without_tolerances_is_the_one_detector_dataset() -> None:
    plain, plain_meta = simulate_dataset(SimulationConfig(seed=3, **SMALL))
    one, one_meta = simulate_dataset(SimulationConfig(seed=3, instruments=1, tolerances={}, **SMALL))
    np.testing.assert_array_equal(plain, one)
    assert plain_meta.equals(one_meta)


def test_units_have_their_own_dead_pixels_and_specimens_keep_their_unit() -> None:
    config = SimulationConfig(seed=4, instruments=8, dead_pixel_fraction=0.02, **SMALL)
    images, metadata = simulate_dataset(config)
    plan = plan_dataset(config)
    assert set(np.unique(plan.instrument)) == set(range(8))
    per_specimen = metadata.assign(unit=plan.instrument).groupby("specimen_id")["unit"].nunique()
    assert (per_specimen == 1).all()
    dead_maps = {unit: np.all(images[plan.instrument == unit] == 0.0, axis=(0, 1)) for unit in range(8)}
    assert all(dead.sum() == round(0.02 * 16 * 16) for dead in dead_maps.values())
    assert not np.array_equal(dead_maps[0], dead_maps[1])
    # unit 0 is the detector the config's detector seed names
    one = SimulationConfig(seed=4, dead_pixel_fraction=0.02, **SMALL)
    np.testing.assert_array_equal(dead_maps[0], plan_dataset(one).dead)


def test_specimens_and_labels_do_not_depend_on_the_units() -> None:
    nominal = SimulationConfig(seed=5, **SMALL)
    randomised = dataclasses.replace(nominal, instruments=16, tolerances=TOLERANCES)
    _, meta_nominal = simulate_dataset(nominal)
    _, meta_randomised = simulate_dataset(randomised)
    contract = list(METADATA_COLUMNS)
    # absorption stays the material's (nominal spectrum)
    assert meta_nominal[contract].equals(meta_randomised[contract])


def test_every_image_records_the_settings_of_the_unit_that_took_it() -> None:
    config = SimulationConfig(seed=5, instruments=16, tolerances=TOLERANCES, **SMALL)
    plan = plan_dataset(config)
    _, metadata = simulate_dataset(config)
    assert list(metadata.columns) == [*METADATA_COLUMNS, *(f"instrument_{k}" for k in RECORDED_SETTINGS)]
    for row, unit in zip(metadata.itertuples(), plan.instrument, strict=True):
        settings = plan.units[unit].settings
        assert row.instrument_kv_scale == settings["kv_scale"]
        assert row.instrument_al_filter_mm == settings["al_filter_mm"]
        assert row.instrument_scatter_fraction_scale == 1.0  # not drawn: nominal
    assert metadata["instrument_kv_scale"].nunique() > 1


def test_a_nominal_dataset_records_the_nominal_settings() -> None:
    config = SimulationConfig(seed=5, **SMALL)
    _, metadata = simulate_dataset(config)
    assert (metadata["instrument_kv_scale"] == 1.0).all()
    assert (metadata["instrument_al_filter_mm"] == config.al_filter_mm).all()
    assert (metadata["instrument_scintillator_mm"] == config.scintillator_mm).all()


def test_settings_are_drawn_inside_the_tolerances_and_change_the_images() -> None:
    config = SimulationConfig(seed=6, instruments=16, tolerances=TOLERANCES, dose=float("inf"), **SMALL)
    plan = plan_dataset(config)
    for unit in plan.units:
        assert set(unit.settings) == set(TOLERANCES)
        for key, (low, high) in TOLERANCES.items():
            assert low <= unit.settings[key] <= high
        assert unit.config.al_filter_mm == unit.settings["al_filter_mm"]
        assert unit.config.kv == pytest.approx(tuple(k * unit.settings["kv_scale"] for k in config.kv))
    assert len({unit.settings["kv_scale"] for unit in plan.units}) == 16
    images, _ = simulate_dataset(config)
    nominal, _ = simulate_dataset(dataclasses.replace(config, tolerances=()))
    assert np.abs(images - nominal).max() > 1e-3


def test_the_same_config_gives_the_same_randomised_dataset() -> None:
    config = SimulationConfig(seed=7, instruments=5, tolerances=TOLERANCES, **SMALL)
    first, _ = simulate_dataset(config)
    second, _ = simulate_dataset(config)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    ("tolerances", "message"),
    [
        ({"kv": [40, 50]}, "'kv' is not an instrument tolerance"),
        ({"al_filter_mm": [1.3, 0.7]}, "al_filter_mm: expected finite low <= high"),
        ({"kv_scale": [0.0, 1.1]}, "kv_scale: low must be > 0"),
        ({"dose_scale": "x2"}, "dose_scale: expected"),
    ],
)
def test_bad_tolerances_are_named(tolerances: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationConfig(tolerances=tolerances)


def test_every_bad_tolerance_is_named_at_once() -> None:
    with pytest.raises(ValueError) as error:
        parse_tolerances({"kv": [1, 2], "blur_sigma_px": [2, 1], "dose_scale": [-1, 1]})
    assert all(name in str(error.value) for name in ("'kv'", "blur_sigma_px", "dose_scale"))


def test_instruments_must_be_a_positive_integer() -> None:
    with pytest.raises(ValueError, match="instruments must be >= 1"):
        SimulationConfig(instruments=0)


def test_randomise_chooses_which_declared_tolerances_the_units_draw() -> None:
    declared = SimulationConfig(
        seed=6, instruments=4, tolerances=TOLERANCES, randomise=["blur_sigma_px"], **SMALL
    )
    assert declared.randomise == ("blur_sigma_px",)
    for unit in plan_dataset(declared).units:
        assert set(unit.settings) == {"blur_sigma_px"}
        assert unit.config.kv == declared.kv and unit.config.al_filter_mm == declared.al_filter_mm
    nothing = dataclasses.replace(declared, randomise=())
    assert all(unit.settings == {} for unit in plan_dataset(nothing).units)
    images, _ = simulate_dataset(nothing)
    units_only, _ = simulate_dataset(dataclasses.replace(nothing, tolerances=(), randomise=None))
    np.testing.assert_array_equal(images, units_only)  # declared but not drawn: the nominal settings


def test_randomise_names_a_key_that_is_not_declared() -> None:
    with pytest.raises(ValueError, match=r"randomise must be keys of the declared tolerances .*'dose_scale'"):
        SimulationConfig(tolerances={"kv_scale": [0.98, 1.02]}, randomise=["dose_scale"], **SMALL)
