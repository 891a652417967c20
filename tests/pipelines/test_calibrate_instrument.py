"""calibrate_instrument: a synthetic lab's calibration folder -> its instrument, which generation.instrument uses."""

from __future__ import annotations

import json
import os

import pytest
from mlflow.tracking import MlflowClient

from alloy_mtl.config import ParameterError
from alloy_mtl.data.synthetic_lab import write_synthetic_lab
from alloy_mtl.physics.calibrated_generation import resolve_generation
from alloy_mtl.physics.simulator import SimulationConfig

HIDDEN = {"kv_scale": 1.04, "al_filter_mm": 1.6, "scintillator_mm": 0.3}
CHANNELS = (1.0, 1.03, 0.98)
SMALL = {"image_size": 16, "n_images": 60, "instruments": 2, "min_images_per_class": 4}


def _calibrated(project) -> dict:
    [record] = (project / "data/06_models/instrument/calibrated_instrument.json").glob(
        "*/calibrated_instrument.json"
    )
    return json.loads(record.read_text())


def test_a_lab_folder_is_calibrated_and_generation_then_simulates_its_instrument(
    kedro_project, run_pipeline, tmp_path
):
    # a tube whose 50 kV channel runs 3 % high and 80 kV one 2 % low beside the 4 % on all
    lab = write_synthetic_lab(
        tmp_path / "lab",
        SimulationConfig(image_size=16),
        HIDDEN,
        test_per_alloy=1,
        channel_kv_scale=CHANNELS,
    )
    params = {
        "calibration": {
            "path": str(lab.calibration),
            "fitted": ["kv_scale", "al_filter_mm", "scintillator_mm"],
        },
        "generation": SMALL,
    }
    run_pipeline(kedro_project, "calibrate_instrument", params)
    record = _calibrated(kedro_project)
    true_kv = [v * 1.04 * f for v, f in zip((40.0, 50.0, 80.0), CHANNELS, strict=True)]
    assert record["channel_kv_test"]["channels_differ"] is True  # per_channel_kv: auto, the default
    calibrated_kv = [
        v * record["instrument"]["kv_scale"] * f
        for v, f in zip((40.0, 50.0, 80.0), record["channel_kv_scale"], strict=True)
    ]
    assert calibrated_kv == pytest.approx(true_kv, rel=0.015)
    assert [s["value"] for s in record["channel_kv"].values()] == pytest.approx(calibrated_kv)
    assert record["instrument"]["al_filter_mm"] == pytest.approx(1.6, abs=0.15)
    assert record["settings"]["scatter_fraction_scale"]["fitted"] is False
    report = (kedro_project / "data/08_reporting/instrument_calibration/report.md").read_text()
    assert "| kv_50kv | 50 | " in report and "identified" in report
    assert "each channel's tube voltage is fitted on its own" in report
    assert record["fixed_pattern"]["n_images"] == 10 and "Residual gain pattern" in report
    assert (kedro_project / "data/08_reporting/instrument_calibration/residuals.png").stat().st_size > 0

    def generated(generation: dict):
        outputs = run_pipeline(kedro_project, "data_generation", {"generation": generation})
        return outputs["source_candidate"].load()

    for choice in ("calibrated", "auto"):
        candidate = generated({**SMALL, "instrument": choice})
        kv = [float(v) for v in candidate.metadata["kv"].iloc[0].split(",")]
        assert kv == pytest.approx(calibrated_kv, rel=1e-3), choice
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], order_by=["attributes.start_time DESC"]
    )
    parent = next(r for r in runs if "generation.kv" in r.data.params)
    assert json.loads(parent.data.params["generation.kv"]) == pytest.approx(calibrated_kv)  # logged resolved
    nominal = generated({**SMALL, "instrument": "nominal"})
    assert nominal.metadata["kv"].iloc[0] == "40,50,80"
    assert generated(SMALL).metadata["kv"].iloc[0] == candidate.metadata["kv"].iloc[0]  # auto is the default
    filters = candidate.metadata["instrument_al_filter_mm"]
    assert filters.between(
        record["instrument"]["al_filter_mm"] - 0.3, record["instrument"]["al_filter_mm"] + 0.3
    ).all()


def test_calibrated_generation_without_a_calibration_says_what_to_run(kedro_project, run_pipeline):
    with pytest.raises(ValueError, match="run `kedro run --pipeline calibrate_instrument"):
        run_pipeline(kedro_project, "data_generation", {"generation": {**SMALL, "instrument": "calibrated"}})


def test_calibration_without_a_folder_or_with_bad_settings_fails_naming_them(kedro_project, run_pipeline):
    with pytest.raises(ValueError, match="calibration.path: required"):
        run_pipeline(kedro_project, "calibrate_instrument", {"generation": SMALL})
    with pytest.raises(ParameterError, match="'gain' is not a calibrated setting"):
        run_pipeline(
            kedro_project, "calibrate_instrument", {"calibration": {"path": "x", "fitted": ["gain"]}}
        )
    bad = {"calibration": {"path": "x", "per_channel_kv": "sometimes", "flats": 3, "darks": True}}
    with pytest.raises(ParameterError) as error:
        run_pipeline(kedro_project, "calibrate_instrument", bad)
    for named in ("calibration.per_channel_kv", "got 'sometimes'", "calibration.flats", "calibration.darks"):
        assert named in str(error.value), named
    assert not (kedro_project / "data/06_models/instrument").exists()


def test_resolution_moves_the_nominal_instrument_and_keeps_the_tolerance_widths():
    generation = {
        "kv": [40, 80],
        "instrument": "calibrated",
        "tolerances": {"kv_scale": [0.98, 1.02], "al_filter_mm": [0.7, 1.3], "scintillator_mm": [0.15, 0.3]},
    }
    instrument = {
        "kv_scale": 1.05,
        "al_filter_mm": 0.2,
        "scintillator_mm": 0.4,
        "scatter_fraction_scale": 2.0,
        "blur_sigma_px": 1.0,
        "dose_scale": 0.5,
    }
    resolved = resolve_generation(generation, {"instrument": instrument})
    assert resolved["kv"] == pytest.approx([42.0, 84.0])
    assert resolved["tolerances"]["kv_scale"] == [0.98, 1.02]
    assert resolved["tolerances"]["al_filter_mm"] == pytest.approx(
        [0.0, 0.5]
    )  # shifted by -0.8, floored at 0
    assert resolved["tolerances"]["scintillator_mm"] == pytest.approx([0.35, 0.5])
    assert resolved["scatter_fraction"] == pytest.approx(0.06) and resolved["dose"] == pytest.approx(10000.0)
    assert resolved["al_filter_mm"] == 0.2 and resolved["blur_sigma_px"] == 1.0
    assert "instrument" not in resolve_generation({"instrument": "nominal", "seed": 3}, None)
    with pytest.raises(ValueError, match="expected one of"):
        resolve_generation({"instrument": "lab"}, None)
    pinned = {"gain_sigma": 0.004, "low": 0.0037, "high": 0.0043, "identifiable": True}
    loose = {**pinned, "low": 0.0, "identifiable": False}
    assert resolve_generation(generation, {"instrument": instrument, "fixed_pattern": pinned})[
        "fixed_pattern_gain_sigma"
    ] == pytest.approx(0.004)
    assert "fixed_pattern_gain_sigma" not in resolve_generation(
        generation, {"instrument": instrument, "fixed_pattern": loose}
    )
    per_channel = {"instrument": instrument, "channel_kv_scale": [1.02, 0.99]}
    assert resolve_generation(generation, per_channel)["kv"] == pytest.approx([42.84, 83.16])
    with pytest.raises(
        ValueError, match=r"channel_kv_scale \[1.02\] does not give one factor > 0 per channel"
    ):
        resolve_generation(generation, {"instrument": instrument, "channel_kv_scale": [1.02]})


@pytest.mark.slow
def test_a_labs_flat_fields_give_the_blur_and_the_level_terms_that_generation_then_uses(
    kedro_project, run_pipeline, tmp_path
):
    config = SimulationConfig(image_size=32)  # flat fields need 24 px or more
    detector = {"drift": 0.012, "gain_sigma": 0.004, "heel_jitter": 0.5, "offset_sigma": 0.0006}
    lab = write_synthetic_lab(
        tmp_path / "lab",
        config,
        {**HIDDEN, "blur_sigma_px": 1.0},
        test_per_alloy=1,
        n_flats=40,
        detector=detector,
        n_darks=40,
    )
    generation = {**SMALL, "image_size": 32}
    params = {
        "calibration": {
            "path": str(lab.calibration),
            "fitted": ["kv_scale", "al_filter_mm", "scintillator_mm", "blur_sigma_px"],
        },
        "generation": generation,
    }
    run_pipeline(kedro_project, "calibrate_instrument", params)
    record = _calibrated(kedro_project)
    flats = record["flat_fields"]
    assert flats["n_frames"] == 40 and flats["source"].endswith("flats")  # found in the calibration folder
    assert record["settings"]["blur_sigma_px"]["given"] is True
    assert record["instrument"]["blur_sigma_px"] == pytest.approx(1.0, rel=0.05)
    # photons per pixel follow the fitted CsI: the same noise behind 0.3 mm instead of 0.2 mm is fewer photons
    assert record["instrument"]["dose_scale"] == pytest.approx(1.0, rel=0.15)
    assert flats["levels"]["drift"] == pytest.approx(0.012, rel=0.3)
    assert flats["levels"]["heel_jitter"] == pytest.approx(0.5, rel=0.3)
    report = (kedro_project / "data/08_reporting/instrument_calibration/report.md").read_text()
    assert (
        "## Flat fields (40 frame(s)" in report and "measured on the flat fields, held in the fit" in report
    )
    resolved = resolve_generation({**generation, "instrument": "calibrated"}, record)
    assert (
        resolved["drift"] == flats["levels"]["drift"]
        and resolved["heel_jitter"] == flats["levels"]["heel_jitter"]
    )
    assert resolved.get("gain_sigma") == flats["levels"].get("gain_sigma")  # set only where pinned down
    assert record["dark_frames"]["identifiable"] is True and "Dark frames (40" in report
    assert resolved["offset_sigma"] == pytest.approx(0.0006, rel=0.2)
    assert resolved["fixed_pattern_gain_sigma"] == pytest.approx(0.005, rel=0.15)  # read off the radiographs
    params["calibration"] |= {"flats": False, "darks": False}
    run_pipeline(kedro_project, "calibrate_instrument", params)
    newest = sorted((kedro_project / "data/06_models/instrument/calibrated_instrument.json").iterdir())[-1]
    assert {"flat_fields", "dark_frames"}.isdisjoint(
        json.loads((newest / "calibrated_instrument.json").read_text())
    )


def test_frame_folders_that_are_named_but_missing_fail_together_before_anything_is_written(
    kedro_project, run_pipeline, tmp_path
):
    lab = write_synthetic_lab(tmp_path / "lab", SimulationConfig(image_size=16), HIDDEN, test_per_alloy=1)
    params = {
        "calibration": {"path": str(lab.calibration), "flats": "open_beam", "darks": "tube_off"},
        "generation": SMALL,
    }
    with pytest.raises(ValueError, match="calibration.flats: .*open_beam' is not a folder") as error:
        run_pipeline(kedro_project, "calibrate_instrument", params)
    assert "calibration.darks: " in str(error.value) and "tube_off' is not a folder" in str(error.value)
    assert not (kedro_project / "data/06_models/instrument").exists()


def test_dark_frames_without_flat_fields_are_refused_before_anything_is_written(
    kedro_project, run_pipeline, tmp_path
):
    lab = write_synthetic_lab(
        tmp_path / "lab", SimulationConfig(image_size=16), HIDDEN, test_per_alloy=1, n_darks=3
    )
    params = {"calibration": {"path": str(lab.calibration)}, "generation": SMALL}
    with pytest.raises(ValueError, match="calibration.darks: .*darks given without flat fields"):
        run_pipeline(kedro_project, "calibrate_instrument", params)
    assert not (kedro_project / "data/06_models/instrument").exists()


def test_what_the_flat_fields_hold_is_named_in_the_same_error_as_a_missing_dark_folder(
    kedro_project, run_pipeline, tmp_path
):
    lab = write_synthetic_lab(
        tmp_path / "lab", SimulationConfig(image_size=16), HIDDEN, test_per_alloy=1, n_flats=2
    )
    params = {"calibration": {"path": str(lab.calibration), "darks": "tube_off"}, "generation": SMALL}
    with pytest.raises(ValueError) as error:
        run_pipeline(kedro_project, "calibrate_instrument", params)
    message = str(error.value)
    assert "calibration.darks: " in message and "tube_off' is not a folder" in message
    assert "calibration.flats (" in message
    assert "frames of 16 x 16 px; at least 24 px" in message and "2 frame(s); at least" in message
    assert not (kedro_project / "data/06_models/instrument").exists()
