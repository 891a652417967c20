"""Folder inference with the physics unknown-designation score beside the model's own unknown score."""

from __future__ import annotations

import dataclasses
import pickle

import mlflow
import numpy as np
import pandas as pd
import pytest
import tifffile
from kedro.io import DatasetError

from alloy_mtl.datasets import OptionalPickleDataset
from alloy_mtl.evaluation.evaluation_set import evaluation_set_config
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.evaluation.physics_unknown import UnknownMaterialsParams, fit_physics_unknown
from alloy_mtl.physics.calibrated_generation import simulated_instrument
from alloy_mtl.physics.materials import material_from_params
from alloy_mtl.physics.simulator import simulate_dataset
from alloy_mtl.pipelines.inference.nodes import check_designations, predict_folder, read_folder
from alloy_mtl.pipelines.unknown_materials.nodes import DISABLED, fit_unknown_materials
from alloy_mtl.tracking.designation_check import DesignationScores, mark_unknown_designations
from alloy_mtl.tracking.model_logging import log_bundle_model

from .conftest import make_bundle

GENERATION = {"seed": 5, "image_size": 16, "n_images": 100}
TINY = {"known_images": 200, "images_per_designation": 40, "reference_images": 200, "batch_size": 50}
#: 7050 is in the default exposure table: what the score was taught to call unknown
SHOWN = material_from_params(
    "7050",
    {"density_g_cm3": 2.83, "limits_wt_pct": {"Cu": [2.0, 2.6], "Mg": [1.9, 2.6], "Zn": [5.7, 6.7], "Zr": [0.08, 0.15]}},
)  # fmt: skip


@pytest.fixture(scope="module")
def score():
    return fit_physics_unknown(GENERATION, UnknownMaterialsParams(**TINY))


@pytest.fixture(scope="module")
def model_uri(mlflow_backend) -> str:
    mlflow.set_tracking_uri(mlflow_backend["uri"])
    mlflow.set_registry_uri(mlflow_backend["uri"])
    run_id = mlflow_backend["client"].create_run(mlflow_backend["experiment_id"]).info.run_id
    bundle = make_bundle(in_chans=3, image_size=16, seed=1)
    return log_bundle_model(bundle, run_id, instrument=simulated_instrument(GENERATION)).model_uri


def _folder(path, n_known: int, n_other: int) -> str:
    """16-bit TIFF files: ``n_known`` images of the five alloys, then ``n_other`` of 7050."""
    config = evaluation_set_config(GENERATION, EvaluationSetParams(n_images=max(n_known, 50), seed_offset=91))
    known, _ = simulate_dataset(config)
    other = (
        simulate_dataset(dataclasses.replace(config, seed=config.seed + 3), materials=[(SHOWN, n_other)])[0]
        if n_other
        else []
    )
    for i, image in enumerate([*known[:n_known], *other[:n_other]]):
        counts = np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)
        tifffile.imwrite(path / f"img_{i:03d}.tif", counts, photometric="minisblack")
    return str(path)


def test_the_folder_pipeline_answers_unknown_for_a_designation_the_model_itself_answers(
    tmp_path, model_uri, score
):
    settings = {"input": _folder(tmp_path, 100, 60), "model_uri": model_uri, "reject_rate": 0.02}
    folder = read_folder(settings, "unused")
    checked = check_designations(folder, score, settings, "unused", GENERATION)
    assert not checked.skipped and len(checked.scores) == 160 and np.isfinite(checked.threshold)
    predictions = predict_folder(folder, checked, None, settings, "unused")
    assert list(predictions.columns)[-1] == "error" and (predictions["error"] == "").all()
    other = predictions["file"].str[4:7].astype(int) >= 100
    physics = predictions["unknown_reason"].str.contains("another aluminium designation by the physics fits")
    assert physics[other].mean() >= 0.6  # 7050 was shown to the score (tiny images and fit: not all)
    assert physics[~other].mean() <= 0.1
    assert (predictions.loc[physics, "alloy"] == "unknown").all()
    assert (predictions["physics_unknown_threshold"] == checked.threshold).all()


def test_where_the_score_cannot_apply_the_model_answers_alone_and_the_reason_is_given(
    tmp_path, model_uri, mlflow_backend, score
):
    settings = {"input": _folder(tmp_path, 60, 0), "model_uri": model_uri}
    folder = read_folder(settings, "unused")
    assert "not fitted (run `kedro run --pipeline unknown_materials`" in (
        check_designations(folder, None, settings, "unused", GENERATION).skipped
    )
    assert check_designations(folder, DISABLED, settings, "unused", GENERATION).skipped == DISABLED
    larger = {**GENERATION, "image_size": 32}  # the model was trained at 16 px from a 16 px simulation
    bigger = fit_physics_unknown(larger, UnknownMaterialsParams(**TINY))
    assert "fitted at 32 px, the images are 16 px" in (
        check_designations(folder, bigger, settings, "unused", GENERATION).skipped
    )
    stale = dataclasses.replace(score, instrument={**score.instrument, "scintillator_mm": 0.3})
    assert "fitted for scintillator_mm 0.3" in (
        check_designations(folder, stale, settings, "unused", GENERATION).skipped
    )  # the model was trained at a calibrated instrument the score never saw
    few = check_designations(
        folder, dataclasses.replace(score, batch_size=200), settings, "unused", GENERATION
    )
    assert "60 usable image(s), too few to fit the instrument from (at least 100)" in few.skipped
    run_id = mlflow_backend["client"].create_run(mlflow_backend["experiment_id"]).info.run_id
    lab = log_bundle_model(make_bundle(in_chans=3, image_size=16, seed=2), run_id).model_uri  # no instrument
    lab_settings = {**settings, "model_uri": lab}
    skipped = check_designations(folder, score, lab_settings, "unused", GENERATION)
    assert "records no simulated instrument" in skipped.skipped
    predictions = predict_folder(folder, skipped, None, lab_settings, "unused")
    assert predictions["physics_unknown_score"].isna().all() and (predictions["alloy"] != "unknown").any()


def test_marking_keeps_the_models_reason_and_leaves_unpredicted_files_unscored():
    predictions = pd.DataFrame(
        {
            "file": ["a.tif", "b.tif", "c.tif", "bad.tif"],
            "alloy": ["6082", "unknown", "1050", None],
            "unknown_reason": ["", "unlike every trained alloy: score 9 > 3", "", None],
            "error": ["", "", "", "ValueError: not square"],
        }
    )
    checked = DesignationScores(files=["a.tif", "b.tif", "c.tif"], scores=np.array([5.0, 6.0, -1.0]), threshold=2.0, reject_rate=0.01)  # fmt: skip
    marked = mark_unknown_designations(predictions, checked)
    assert list(marked["alloy"][:3]) == ["unknown", "unknown", "1050"]
    assert marked["unknown_reason"][0].startswith(
        "another aluminium designation by the physics fits: score 5"
    )
    assert marked["unknown_reason"][1].startswith(
        "unlike every trained alloy: score 9 > 3; another aluminium"
    )
    assert marked["unknown_reason"][2] == "" and np.isnan(marked["physics_unknown_score"][3])
    assert list(marked.columns)[-1] == "error"
    assert mark_unknown_designations(predictions, DesignationScores(skipped="x"))["alloy"].equals(
        predictions["alloy"]
    )


def test_the_optional_pickle_reads_none_until_the_pipeline_has_written_it(tmp_path):
    path = tmp_path / "score.pkl"
    dataset = OptionalPickleDataset(str(path))
    assert dataset.load() is None and not dataset.exists()
    path.write_bytes(pickle.dumps({"fitted": True}))
    assert dataset.load() == {"fitted": True}
    with pytest.raises(DatasetError, match=r"read-only here"):
        dataset.save({"x": 1})


def test_the_node_reports_a_disabled_score_and_names_bad_settings_before_fitting():
    assert fit_unknown_materials(GENERATION, {"enabled": False}) == (
        DISABLED,
        {"fitted": False, "reason": DISABLED},
    )
    with pytest.raises(ValueError, match=r"unknown_materials.batch_size"):
        fit_unknown_materials(GENERATION, {"batch_size": 1})
