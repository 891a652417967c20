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
SMALL = {"image_size": 16, "n_images": 60, "instruments": 2, "min_images_per_class": 4}


def _calibrated(project) -> dict:
    [record] = (project / "data/06_models/instrument/calibrated_instrument.json").glob(
        "*/calibrated_instrument.json"
    )
    return json.loads(record.read_text())


def test_a_lab_folder_is_calibrated_and_generation_then_simulates_its_instrument(
    kedro_project, run_pipeline, tmp_path
):
    lab = write_synthetic_lab(tmp_path / "lab", SimulationConfig(image_size=16), HIDDEN, test_per_alloy=1)
    params = {
        "calibration": {
            "path": str(lab.calibration),
            "fitted": ["kv_scale", "al_filter_mm", "scintillator_mm"],
        },
        "generation": SMALL,
    }
    run_pipeline(kedro_project, "calibrate_instrument", params)
    record = _calibrated(kedro_project)
    assert record["instrument"]["kv_scale"] == pytest.approx(1.04, abs=0.01)
    assert record["instrument"]["al_filter_mm"] == pytest.approx(1.6, abs=0.1)
    assert record["settings"]["scatter_fraction_scale"]["fitted"] is False
    report = (kedro_project / "data/08_reporting/instrument_calibration/report.md").read_text()
    assert "| kv_scale | 1 | 1.04" in report and "identified" in report
    assert (kedro_project / "data/08_reporting/instrument_calibration/residuals.png").stat().st_size > 0

    def generated(generation: dict):
        outputs = run_pipeline(kedro_project, "data_generation", {"generation": generation})
        return outputs["source_candidate"].load()

    calibrated_kv = [v * record["instrument"]["kv_scale"] for v in (40.0, 50.0, 80.0)]
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
