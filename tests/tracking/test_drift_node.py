"""The inference pipeline's drift node against a logged model: the beam it recorded, the reference detector."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pandas as pd
import pytest
import tifffile

from alloy_mtl.evaluation.evaluation_set import evaluation_set_config
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.physics.calibrated_generation import simulated_instrument
from alloy_mtl.physics.simulator import simulate_dataset
from alloy_mtl.pipelines.inference.nodes import (
    InstrumentDrift,
    check_drift,
    check_failures,
    predict_folder,
    read_drift_reference,
    read_folder,
    read_inputs,
)
from alloy_mtl.tracking import inference as inference_module
from alloy_mtl.tracking.designation_check import DesignationScores
from alloy_mtl.tracking.model_logging import log_bundle_model

from .conftest import make_bundle

GENERATION = {"seed": 5, "image_size": 16, "n_images": 100}
EVALUATION = {"evaluation_set": {"n_images": 300}}
DRIFT = {"batch_size": 60, "min_images": 40}


@pytest.fixture(scope="module")
def model_uri(mlflow_backend) -> str:
    mlflow.set_tracking_uri(mlflow_backend["uri"])  # module scope: before the per-test autouse fixture
    mlflow.set_registry_uri(mlflow_backend["uri"])
    client = mlflow_backend["client"]
    run_id = client.create_run(mlflow_backend["experiment_id"]).info.run_id
    bundle = make_bundle(in_chans=3, image_size=16, seed=1)
    return log_bundle_model(bundle, run_id, instrument=simulated_instrument(GENERATION)).model_uri


def _folder(tmp_path, **changes) -> str:
    """60 images of fresh specimens, as 16-bit TIFF files (one per image), imaged as ``changes`` say."""
    base = evaluation_set_config(GENERATION, EvaluationSetParams(n_images=60, seed_offset=77))
    images, _ = simulate_dataset(dataclasses.replace(base, **changes))
    for i, image in enumerate(images[:60]):
        counts = np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)
        tifffile.imwrite(tmp_path / f"img_{i:03d}.tif", counts, photometric="minisblack")
    return str(tmp_path)


def _check(folder: str, model_uri: str, **drift) -> tuple[pd.DataFrame, str]:
    inference = {"input": folder, "model_uri": model_uri}
    images, reference, _ = read_inputs(inference, {**DRIFT, **drift}, "unused", GENERATION, EVALUATION)
    return check_drift(images, reference)


def test_images_from_the_models_instrument_and_the_reference_detector_raise_no_alarm(tmp_path, model_uri):
    table, report = _check(_folder(tmp_path), model_uri)
    assert len(table) == 1 and not table["alarm"].any(), table.T
    assert table.loc[0, "pattern_informative"] and table.loc[0, "pattern_similarity"] > 0.8
    assert "No alarm in 1 batch(es)" in report


def test_another_beam_and_detector_raise_the_alarm_with_both_reasons_and_fail_on_alarm_stops_the_run(
    tmp_path, model_uri
):
    base = evaluation_set_config(GENERATION, EvaluationSetParams())
    folder = _folder(tmp_path, kv=tuple(1.03 * kv for kv in base.kv), detector_seed=4242)
    table, report = _check(folder, model_uri)
    row = table.iloc[0]
    assert row["alarm"] and row["beam_alarm"] and row["pattern_alarm"]
    assert row["fitted_kv_scale"] > 1.0 and "another detector unit" in row["reasons"]
    assert "**ALARM in 1 of 1 batch(es)**" in report and "img_000.tif .. img_059.tif" in report
    predictions = pd.DataFrame({"file": ["a.tif"], "error": [""]})
    check_failures(predictions, table, DRIFT)  # warn only, by default
    with pytest.raises(InstrumentDrift, match=r"drift alarm in 1 of 1 batch\(es\).*beam differs"):
        check_failures(predictions, table, {**DRIFT, "fail_on_alarm": True})


def test_too_few_images_check_nothing_and_a_bad_reference_folder_is_named(tmp_path, model_uri):
    table, report = _check(_folder(tmp_path), model_uri, min_images=61)
    assert table.empty and list(table.columns)[:3] == ["batch", "first_file", "last_file"]
    assert "fewer than 61" in report
    with pytest.raises(ValueError, match=r"inference.drift.reference: '.*missing' is not a folder"):
        _check(str(tmp_path), model_uri, reference=str(tmp_path / "missing"))
    empty = tmp_path / "empty_reference"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"inference.drift.reference: '.*empty_reference' holds no"):
        _check(str(tmp_path), model_uri, reference=str(empty))
    (empty / "broken.png").write_bytes(b"not a png")
    with pytest.raises(
        ValueError, match=r"reference: '.*empty_reference' has 0 usable image\(s\).*broken.png"
    ):
        _check(str(tmp_path), model_uri, reference=str(empty))
    assert not (tmp_path / "data").exists()
    with pytest.raises(ValueError, match=r"inference.drift.alpha"):
        _check(str(tmp_path), model_uri, alpha=2)


def test_a_model_whose_channels_no_simulated_instrument_has_is_reported_not_checked(mlflow_backend, tmp_path):
    run_id = mlflow_backend["client"].create_run(mlflow_backend["experiment_id"]).info.run_id
    bundle = make_bundle(in_chans=1, image_size=16, seed=2)  # as trained on a one-channel lab folder
    uri = log_bundle_model(bundle, run_id, instrument=simulated_instrument(GENERATION)).model_uri
    table, report = _check(_folder(tmp_path), uri)
    assert table.empty and "not checked" in report and "takes 1 channel(s)" in report


def test_prediction_and_the_drift_alarm_share_one_read_of_the_folder(tmp_path, model_uri, monkeypatch):
    settings = {"input": _folder(tmp_path), "model_uri": model_uri}
    reads = []
    original = inference_module.read_image
    monkeypatch.setattr(
        inference_module, "read_image", lambda *a, **k: reads.append(a[0]) or original(*a, **k)
    )
    folder = read_folder(settings, "unused")
    predictions = predict_folder(folder, DesignationScores(skipped="not fitted"), None, settings, "unused")
    table, _ = check_drift(folder, read_drift_reference(settings, DRIFT, "unused", GENERATION, EVALUATION))
    assert len(reads) == len(set(reads)) == 60  # every file read once, for both
    assert len(predictions) == 60 and (predictions["error"] == "").all() and len(table) == 1
    assert all(set(row) == {"file", "error"} for row in folder.rows)  # prediction left the shared rows alone


def test_a_model_trained_on_a_lab_folder_records_no_instrument_and_its_drift_is_not_checked(
    mlflow_backend, tmp_path
):
    from alloy_mtl.hooks import trained_on_simulation

    assert trained_on_simulation({"data_source": {"kind": "generated", "lab_images": {"path": "lab"}}})
    assert not trained_on_simulation({"data_source": {"kind": "csv_folder", "path": "lab"}})
    run_id = mlflow_backend["client"].create_run(mlflow_backend["experiment_id"]).info.run_id
    uri = log_bundle_model(make_bundle(in_chans=3, image_size=16, seed=3), run_id).model_uri  # no instrument
    table, report = _check(_folder(tmp_path), uri)
    assert table.empty and "not checked" in report and "records no instrument" in report


def test_a_labs_csv_folder_from_its_own_detector_is_a_reference_that_recognises_it(tmp_path, model_uri):
    from alloy_mtl.data.synthetic_lab import write_image_folder

    (tmp_path / "input").mkdir()
    folder = _folder(tmp_path / "input", detector_seed=4243)  # the lab's detector, the model's beam
    reference = dataclasses.replace(
        evaluation_set_config(GENERATION, EvaluationSetParams(n_images=60, seed_offset=99)),
        detector_seed=4243,
    )
    images, metadata = simulate_dataset(reference)  # other specimens, the same detector unit
    write_image_folder(tmp_path / "reference", images[:40], metadata.iloc[:40], reference.kv, "png")
    assert len(list((tmp_path / "reference/images").glob("*.png"))) == 40 * 3  # one 16-bit PNG per channel
    default, _ = _check(folder, model_uri)  # against the generated evaluation set's detector: another unit
    assert default.loc[0, "pattern_alarm"] and not default.loc[0, "beam_alarm"]
    table, report = _check(folder, model_uri, reference=str(tmp_path / "reference"))
    assert table.loc[0, "pattern_informative"] and not table.loc[0, "alarm"], table.T
    assert "No alarm in 1 batch(es)" in report


def test_a_csv_folder_reference_of_another_channel_count_is_named(tmp_path, model_uri):
    from alloy_mtl.data.synthetic_lab import write_image_folder

    config = evaluation_set_config(GENERATION, EvaluationSetParams(n_images=60, seed_offset=99))
    images, metadata = simulate_dataset(config)
    write_image_folder(tmp_path / "reference", images[:10, :1], metadata.iloc[:10], config.kv[:1], "png")
    (tmp_path / "input").mkdir()
    with pytest.raises(
        ValueError, match=r"reference: '.*reference' holds 1-channel images, the model takes 3"
    ):
        _check(_folder(tmp_path / "input"), model_uri, reference=str(tmp_path / "reference"))


def test_a_bad_reference_stops_the_run_with_the_input_folders_problem_before_anything_is_predicted(
    tmp_path, model_uri
):
    from alloy_mtl.pipelines.inference.pipeline import create_pipeline

    (tmp_path / "input").mkdir()
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference/broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError) as raised:
        read_inputs(
            {"input": str(tmp_path / "input"), "model_uri": model_uri},
            {**DRIFT, "reference": str(tmp_path / "reference")},
            "unused",
            GENERATION,
            EVALUATION,
        )
    assert "inference.input" in str(raised.value) and "holds no" in str(raised.value)
    assert "reference: '" in str(raised.value) and "has 0 usable image(s)" in str(raised.value)
    # the node that reads the images prediction needs is the node that reads the reference
    (reader,) = [node for node in create_pipeline().nodes if "inference_images" in node.outputs]
    assert "inference_drift_reference" in reader.outputs


def test_a_listed_folder_of_per_channel_pngs_is_predicted_as_the_same_images_in_tiff_files(
    tmp_path, model_uri
):
    from PIL import Image

    tiffs, pngs = tmp_path / "tiff", tmp_path / "png"
    tiffs.mkdir()
    pngs.mkdir()
    _folder(tiffs)
    rows = []
    for file in sorted(tiffs.glob("*.tif")):
        counts = tifffile.imread(file)
        names = [f"{file.stem}_{kv}kv.png" for kv in (40, 50, 80)]
        for name, channel in zip(names, counts, strict=True):
            Image.fromarray(channel).save(pngs / name)
        rows.append({"image_id": file.stem, "path": ";".join(names)})  # no labels
    pd.DataFrame(rows).to_csv(pngs / "metadata.csv", index=False)

    predicted = {}
    for name, folder in (("tiff", tiffs), ("png", pngs)):
        settings = {"input": str(folder), "model_uri": model_uri}
        predicted[name] = predict_folder(
            read_folder(settings, "unused"), DesignationScores(skipped="not fitted"), None, settings, "unused"
        )
    listed, single = predicted["png"], predicted["tiff"]
    assert list(listed["image_id"]) == [f.removesuffix(".tif") for f in single["file"]]
    assert (listed["error"] == "").all() and len(listed) == 60
    np.testing.assert_allclose(listed["prob_1050"], single["prob_1050"], atol=1e-6)
    np.testing.assert_allclose(listed["thickness_mm"], single["thickness_mm"], atol=1e-5)
