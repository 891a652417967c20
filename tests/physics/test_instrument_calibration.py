"""Instrument calibration: a synthetic lab's hidden instrument recovered from a few labelled radiographs."""

from __future__ import annotations

import dataclasses
import json
from functools import cache

import numpy as np
import pytest

from alloy_mtl.data.ingest import ingest_csv_folder
from alloy_mtl.data.synthetic_lab import HIDDEN_INSTRUMENT_FILE, write_synthetic_lab
from alloy_mtl.physics.alloys import get_alloy
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument_calibration import calibrate_instrument
from alloy_mtl.physics.instrument_fit import instrument_config, nominal_instrument
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

NOMINAL = SimulationConfig(seed=3, image_size=16)
HIDDEN = {"kv_scale": 0.96, "al_filter_mm": 1.8, "scintillator_mm": 0.25, "scatter_fraction_scale": 2.0}
FITTED = ("kv_scale", "al_filter_mm", "scintillator_mm", "scatter_fraction_scale")


@cache
def _calibration_images(n: int = 10) -> tuple[np.ndarray, list[str], np.ndarray]:
    lab = dataclasses.replace(
        instrument_config(NOMINAL, {**nominal_instrument(NOMINAL), **HIDDEN}), detector_seed=4242, seed=9
    )
    images, meta = simulate_dataset(
        dataclasses.replace(lab, images_per_specimen=1), materials=[(get_alloy("1050"), n)]
    )
    return images, meta["alloy"].astype(str).tolist(), meta["thickness_mm"].to_numpy()


def test_hidden_tube_voltage_and_filter_are_recovered_with_intervals_that_hold_them() -> None:
    images, alloys, thickness = _calibration_images()
    calibration = calibrate_instrument(images, alloys, thickness, NOMINAL, fitted=FITTED)
    fitted = {s.key: s for s in calibration.settings}
    assert abs(fitted["kv_scale"].value / HIDDEN["kv_scale"] - 1) < 0.01
    assert abs(fitted["al_filter_mm"].value - HIDDEN["al_filter_mm"]) < 0.1
    for key in FITTED:
        assert fitted[key].identifiable, key
    for key in ("kv_scale", "al_filter_mm"):
        assert fitted[key].low <= HIDDEN[key] <= fitted[key].high, key
    assert abs(fitted["scatter_fraction_scale"].value - HIDDEN["scatter_fraction_scale"]) < 0.75
    held = fitted["dose_scale"]
    assert not held.fitted and held.value == 1.0
    assert calibration.log_likelihood > calibration.nominal_log_likelihood
    assert calibration.rms_calibrated < 0.5 * calibration.rms_nominal
    record = json.loads(json.dumps(calibration.to_dict()))
    assert record["instrument"]["kv_scale"] == pytest.approx(fitted["kv_scale"].value)


def test_a_setting_the_data_cannot_tell_is_reported_not_identifiable() -> None:
    images, alloys, thickness = _calibration_images()
    # a search range the profile cannot resolve within: blur below a tenth of a pixel leaves no trace
    calibration = calibrate_instrument(
        images,
        alloys,
        thickness,
        NOMINAL,
        fitted=("kv_scale", "blur_sigma_px"),
        search_ranges={"blur_sigma_px": (0.0, 0.05)},
    )
    blur = {s.key: s for s in calibration.settings}["blur_sigma_px"]
    assert not blur.identifiable and np.isnan(blur.low) and np.isnan(blur.sd)
    assert calibration.not_identifiable == ["blur_sigma_px"]


def test_the_labelled_likelihood_prefers_the_true_instrument() -> None:
    images, alloys, thickness = _calibration_images()
    estimator = PhysicsLimitEstimator(NOMINAL, alloys=["1050"])
    truth = {**nominal_instrument(NOMINAL), **HIDDEN}
    at_truth, _ = estimator.labelled_fit(images, alloys, thickness, 0.02, truth)
    at_nominal, residual = estimator.labelled_fit(
        images, alloys, thickness, 0.02, nominal_instrument(NOMINAL)
    )
    assert at_truth.sum() > at_nominal.sum()
    assert residual.shape == (len(alloys), len(NOMINAL.kv), NOMINAL.image_size)


def test_an_alloy_subset_leaves_each_alloys_likelihood_unchanged() -> None:
    images, alloys, thickness = _calibration_images()
    full = PhysicsLimitEstimator(NOMINAL).labelled_fit(
        images, alloys, thickness, 0.02, nominal_instrument(NOMINAL)
    )
    subset = PhysicsLimitEstimator(NOMINAL, alloys=["1050", "7075"]).labelled_fit(
        images, alloys, thickness, 0.02, nominal_instrument(NOMINAL)
    )
    np.testing.assert_allclose(subset[0], full[0], rtol=1e-10)


def test_bad_calibration_input_names_every_problem() -> None:
    images, alloys, thickness = _calibration_images()
    bad_thickness = thickness.copy()
    bad_thickness[2] = np.nan
    with pytest.raises(ValueError) as err:
        calibrate_instrument(
            images[:, :2],
            alloys,
            bad_thickness,
            NOMINAL,
            fitted=("kv_scale", "gain"),
            search_ranges={"al_filter_mm": (2.0, 1.0)},
        )
    message = str(err.value)
    for expected in (
        "'gain' is not a calibrated setting",
        "al_filter_mm",
        "images: expected shape",
        "rows [2]",
    ):
        assert expected in message


def test_an_unknown_alloy_subset_is_refused() -> None:
    with pytest.raises(ValueError, match="subset"):
        PhysicsLimitEstimator(NOMINAL, alloys=["6061"])


def test_a_synthetic_lab_is_written_as_16_bit_files_the_ingest_reads_back(tmp_path) -> None:
    lab = write_synthetic_lab(tmp_path / "lab", NOMINAL, HIDDEN, n_calibration=3, test_per_alloy=3)
    calibration = ingest_csv_folder(lab.calibration, required_alloys=None)
    assert calibration.images.shape == (3, 3, 16, 16)
    assert set(calibration.metadata["alloy"]) == {"1050"}
    assert calibration.metadata["thickness_mm"].notna().all()
    test = ingest_csv_folder(lab.test)
    assert sorted(test.metadata["alloy"].value_counts().tolist()) == [3] * 5
    hidden = json.loads((lab.root / HIDDEN_INSTRUMENT_FILE).read_text())["instrument"]
    assert hidden["kv_scale"] == 0.96 and hidden["dose_scale"] == 1.0
    tiff = write_synthetic_lab(
        tmp_path / "tiff", NOMINAL, HIDDEN, n_calibration=2, test_per_alloy=1, image_format="tiff"
    )
    read = ingest_csv_folder(tiff.calibration, required_alloys=None)
    np.testing.assert_allclose(read.images[:, :, :, :], read.images.clip(0, 1))
    with pytest.raises(FileExistsError, match="not empty"):
        write_synthetic_lab(lab.root, NOMINAL, HIDDEN)


def test_a_synthetic_lab_with_bad_settings_names_every_problem_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError) as err:
        write_synthetic_lab(tmp_path / "lab", NOMINAL, {"kv": 1.1}, n_calibration=0, labelled_per_alloy=-1)
    assert "instrument keys ['kv'] are not among" in str(err.value)
    assert "labelled_per_alloy must be >= 0, got -1" in str(err.value)
    assert "n_calibration must be >= 1, got 0" in str(err.value)
    assert not (tmp_path / "lab").exists()


@cache
def _channel_lab_images(channels: tuple[float, ...]) -> tuple[np.ndarray, list[str], np.ndarray]:
    lab = dataclasses.replace(
        instrument_config(NOMINAL_32, {**nominal_instrument(NOMINAL_32), **HIDDEN}, channels),
        detector_seed=4242,
        seed=9,
    )
    images, meta = simulate_dataset(
        dataclasses.replace(lab, images_per_specimen=1), materials=[(get_alloy("1050"), 10)]
    )
    return images, meta["alloy"].astype(str).tolist(), meta["thickness_mm"].to_numpy()


NOMINAL_32 = SimulationConfig(seed=3, image_size=32)


def test_each_channels_tube_voltage_is_fitted_when_the_channels_are_off_their_nominal_ratios() -> None:
    channels = (1.0, 1.03, 0.98)
    true_kv = np.array(NOMINAL_32.kv) * HIDDEN["kv_scale"] * np.array(channels)
    images, alloys, thickness = _channel_lab_images(channels)
    one = calibrate_instrument(images, alloys, thickness, NOMINAL_32, fitted=FITTED)
    auto = calibrate_instrument(images, alloys, thickness, NOMINAL_32, fitted=FITTED, per_channel_kv="auto")
    assert one.channel_kv_test is None and one.channel_kv_scale is None
    assert auto.channel_kv_test["channels_differ"] and auto.channel_kv_test["p_value"] < 1e-6
    fitted_kv = np.array(NOMINAL_32.kv) * auto.instrument["kv_scale"] * np.array(auto.channel_kv_scale)
    one_kv = np.array(NOMINAL_32.kv) * one.instrument["kv_scale"]
    assert np.abs(fitted_kv / true_kv - 1).max() < 0.01  # one factor on all misses a channel by > 2 %
    assert np.abs(one_kv / true_kv - 1).max() > 0.02
    assert np.prod(auto.channel_kv_scale) == pytest.approx(1.0)  # kv_scale is the channels' geometric mean
    settings = {s.key: s for s in auto.settings}
    assert abs(settings["al_filter_mm"].value - HIDDEN["al_filter_mm"]) < 0.1
    assert abs({s.key: s for s in one.settings}["al_filter_mm"].value - HIDDEN["al_filter_mm"]) > 0.2
    assert [s.key for s in auto.channel_settings] == ["kv_40kv", "kv_50kv", "kv_80kv"]
    assert [s.value for s in auto.channel_settings] == pytest.approx(fitted_kv)
    assert all(s.identifiable and s.low < s.value < s.high for s in auto.channel_settings)
    assert auto.log_likelihood > one.log_likelihood + 20
    record = json.loads(json.dumps(auto.to_dict()))
    assert record["channel_kv_scale"] == pytest.approx(list(auto.channel_kv_scale))
    assert record["channel_kv_test"]["per_channel"] is True


def test_per_channel_tube_voltages_need_kv_among_the_fitted_settings() -> None:
    images, alloys, thickness = _calibration_images()
    with pytest.raises(ValueError, match="per_channel_kv needs 'kv_scale' among the fitted settings"):
        calibrate_instrument(
            images, alloys, thickness, NOMINAL, fitted=("al_filter_mm",), per_channel_kv=True
        )
