"""Noise levels and blur of a detector measured on its flat fields, and its dark offset on its dark frames."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest
from PIL import Image

from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.frames import read_frames
from alloy_mtl.data.synthetic_lab import write_synthetic_lab
from alloy_mtl.physics.alloys import get_alloy
from alloy_mtl.physics.dark_offsets import dark_offsets
from alloy_mtl.physics.flat_field_noise import dose_scale_for, flat_field_noise, noise_correlation
from alloy_mtl.physics.instrument_calibration import calibrate_instrument
from alloy_mtl.physics.instrument_fit import instrument_config, nominal_instrument
from alloy_mtl.physics.materials import OPEN_BEAM
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

DETECTOR = SimulationConfig(
    seed=5,
    image_size=32,
    images_per_specimen=1,
    dose=8000.0,
    blur_sigma_px=1.1,
    drift=0.01,
    gain_sigma=0.004,
    heel_jitter=0.4,
)


@cache
def _raw_flats(n: int, config: SimulationConfig = DETECTOR) -> np.ndarray:
    """Raw open-beam exposures: the flat-field normalised open beam through a 5 % pixel gain map, in counts."""
    flats, _ = simulate_dataset(config, materials=[(OPEN_BEAM, n)])
    panel = 1.0 + 0.05 * np.random.default_rng(1).standard_normal(flats.shape[1:])
    return np.round(flats * panel * 40000.0)


def test_the_blur_photons_and_level_terms_of_the_detector_are_measured() -> None:
    noise = flat_field_noise(_raw_flats(200), DETECTOR)
    assert noise.blur_sigma_px == pytest.approx(1.1, rel=0.03)
    assert noise.dose_scale == pytest.approx(1.0, rel=0.05)
    assert dose_scale_for(DETECTOR, noise.noise_variance) == pytest.approx(noise.dose_scale)
    assert noise.drift == pytest.approx(0.01, rel=0.15)
    assert noise.gain_sigma == pytest.approx(0.004, rel=0.25)
    assert noise.heel_jitter == pytest.approx(0.4, rel=0.1)
    assert noise.levels() == {
        "drift": noise.drift,
        "gain_sigma": noise.gain_sigma,
        "heel_jitter": noise.heel_jitter,
    }
    for name, (low, high) in noise.intervals.items():
        assert low < getattr(noise, name) < high, name


def test_a_few_frames_give_blur_and_photons_but_not_the_exposure_to_exposure_terms() -> None:
    nominal = dataclasses.replace(DETECTOR, dose=20000.0, blur_sigma_px=0.7)
    noise = flat_field_noise(_raw_flats(10, nominal), nominal)
    assert noise.blur_sigma_px == pytest.approx(0.7, rel=0.05)
    assert noise.dose_scale == pytest.approx(1.0, rel=0.05)
    assert noise.levels() == {}  # too few frames: the configured values stay
    record = noise.to_dict()
    assert record["levels"] == {} and set(record["measured"]) == {"drift", "gain_sigma", "heel_jitter"}


def test_the_same_noise_means_fewer_photons_behind_a_thicker_scintillator() -> None:
    noise = flat_field_noise(_raw_flats(10), DETECTOR)
    thicker = dataclasses.replace(DETECTOR, scintillator_mm=0.4)
    assert dose_scale_for(thicker, noise.noise_variance) < 0.9 * noise.dose_scale


def test_blur_is_read_from_the_noise_correlation() -> None:
    assert noise_correlation(0.0) == 0.0
    assert 0.5 < noise_correlation(0.7) < noise_correlation(1.1) < 0.9


def test_bad_frames_are_named_all_at_once() -> None:
    frames = _raw_flats(10)[:2].copy()
    frames[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"2 frame\(s\); at least 3.*NaN or infinite"):
        flat_field_noise(frames, DETECTOR)
    with pytest.raises(ValueError, match="dark frames, not flat fields"):
        flat_field_noise(np.zeros((4, 3, 32, 32)), DETECTOR)
    with pytest.raises(ValueError, match="frames of 16 x 16 px; at least 24 px each way"):
        flat_field_noise(np.ones((4, 3, 16, 16)), DETECTOR)
    with pytest.raises(ValueError, match=r"expected frames of shape \(N, 3, H, W\)"):
        flat_field_noise(np.ones((4, 2, 8, 8)), DETECTOR)


def test_calibration_holds_the_measured_blur_and_lets_the_dose_follow_the_spectrum() -> None:
    nominal = SimulationConfig(seed=3, image_size=32)  # 16 px leaves too few pixels inside the blur's border
    hidden = {**nominal_instrument(nominal), "kv_scale": 0.97, "al_filter_mm": 1.5, "blur_sigma_px": 1.0}
    lab = dataclasses.replace(
        instrument_config(nominal, hidden), detector_seed=77, seed=9, images_per_specimen=1
    )
    images, meta = simulate_dataset(lab, materials=[(get_alloy("1050"), 8)])
    noise = flat_field_noise(_raw_flats(20, dataclasses.replace(lab, seed=10)), nominal)
    calibration = calibrate_instrument(
        images,
        meta["alloy"].tolist(),
        meta["thickness_mm"].to_numpy(),
        nominal,
        fitted=("kv_scale", "al_filter_mm", "blur_sigma_px", "dose_scale"),
        known=noise.instrument(),
        noise_variance=noise.noise_variance,
    )
    settings = {s.key: s for s in calibration.settings}
    assert settings["blur_sigma_px"].given and not settings["blur_sigma_px"].fitted
    assert settings["blur_sigma_px"].value == pytest.approx(1.0, rel=0.05)
    dose = settings["dose_scale"]
    assert dose.given and dose.value == calibration.instrument["dose_scale"]
    imaged = instrument_config(nominal, {**calibration.instrument, "dose_scale": 1.0})
    assert dose.value == pytest.approx(dose_scale_for(imaged, noise.noise_variance))
    assert dose.value == pytest.approx(1.0, rel=0.1)
    assert abs(settings["kv_scale"].value - 0.97) < 0.01
    with pytest.raises(ValueError, match=r"noise_variance \[1.0\]: expected one value > 0 per channel"):
        calibrate_instrument(
            images, meta["alloy"].tolist(), meta["thickness_mm"].to_numpy(), nominal, noise_variance=[1.0]
        )


def _png(path, array: np.ndarray) -> None:
    Image.fromarray(array.astype(np.uint16)).save(path)


def test_a_folder_of_frames_is_read_with_every_bad_frame_named(tmp_path) -> None:
    frames = _raw_flats(10)[:3].astype(np.uint16)
    listed = tmp_path / "listed"
    listed.mkdir()
    rows = []
    for i, frame in enumerate(frames):
        names = []
        for c, channel in enumerate(frame):
            _png(listed / f"f{i}_{c}.png", channel)
            names.append(f"f{i}_{c}.png")
        rows.append(f"f{i},{';'.join(names)}")
    (listed / "metadata.csv").write_text("image_id,path\n" + "\n".join(rows) + "\n")
    stacked = read_frames(listed, 16, "calibration.flats")
    assert stacked.shape == (3, 3, 32, 32)
    assert np.allclose(stacked * 65535, frames)
    (listed / "f1_2.png").write_bytes(b"not a png")
    (listed / "f2_0.png").unlink()
    with pytest.raises(DataValidationError) as error:
        read_frames(listed, 16, "calibration.flats")
    assert (
        "2 of 3 frame(s)" in str(error.value)
        and "f1_2.png" in str(error.value)
        and "f2_0" in str(error.value)
    )
    with pytest.raises(ValueError, match="parameters calibration.flats: .* is not a folder"):
        read_frames(tmp_path / "missing", None, "calibration.flats")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        read_frames(tmp_path / "empty", None, "calibration.flats")


def test_the_per_exposure_dark_offset_is_measured_on_raw_dark_frames_against_the_flats(tmp_path) -> None:
    config = SimulationConfig(image_size=32)
    lab = write_synthetic_lab(
        tmp_path / "lab",
        config,
        {},
        test_per_alloy=1,
        n_flats=30,
        n_darks=40,
        detector={"offset_sigma": 0.0005},
    )
    noise = flat_field_noise(read_frames(lab.calibration / "flats", None, "calibration.flats"), config)
    darks = read_frames(lab.calibration / "darks", None, "calibration.darks")
    offsets = dark_offsets(darks, noise.open_level)
    assert offsets.offset_sigma == pytest.approx(0.0005, rel=0.15)
    assert offsets.identifiable and offsets.low <= 0.0005 <= offsets.high
    assert not dark_offsets(darks[:10], noise.open_level).identifiable  # too few frames to use
    clipped = np.clip(darks - darks.mean(), 0.0, None)  # dark-corrected and stored unsigned
    with pytest.raises(ValueError, match="lost the offsets' negative half; give the raw darks"):
        dark_offsets(clipped, noise.open_level)
    with pytest.raises(ValueError, match=r"expected frames of shape \(N, 2, H, W\)"):
        dark_offsets(darks, noise.open_level[:2])
