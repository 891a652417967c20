"""The inference pipeline refits a logged model's conformal sets on a labelled folder of the detector in operation."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pytest

from alloy_mtl.data.synthetic_lab import write_image_folder
from alloy_mtl.evaluation.evaluation_set import evaluation_set_config
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.physics.calibrated_generation import simulated_instrument
from alloy_mtl.physics.simulator import simulate_dataset
from alloy_mtl.pipelines.inference.nodes import NOT_REFITTED, fit_unit_conformal, predict_folder, read_inputs
from alloy_mtl.tracking.designation_check import DesignationScores
from alloy_mtl.tracking.model_logging import log_bundle_model

from .conftest import make_bundle

GENERATION = {"seed": 5, "image_size": 16, "n_images": 100}
DISABLED = {"enabled": False}
UNIT = 4243
"""The lab's detector unit: neither the model's nor the generated sets'."""


@pytest.fixture(scope="module")
def model_uri(mlflow_backend) -> str:
    mlflow.set_tracking_uri(mlflow_backend["uri"])
    mlflow.set_registry_uri(mlflow_backend["uri"])
    client = mlflow_backend["client"]
    run_id = client.create_run(mlflow_backend["experiment_id"]).info.run_id
    bundle = make_bundle(in_chans=3, image_size=16, seed=3)
    return log_bundle_model(bundle, run_id, instrument=simulated_instrument(GENERATION)).model_uri


def _unit_images(n: int, seed_offset: int):
    config = evaluation_set_config(GENERATION, EvaluationSetParams(n_images=n, seed_offset=seed_offset))
    return simulate_dataset(dataclasses.replace(config, detector_seed=UNIT))


def _labelled(folder, n: int = 90):
    images, metadata = _unit_images(n, seed_offset=31)
    write_image_folder(folder, images[:n], metadata.iloc[:n], [40, 50, 80], "png")
    return metadata.iloc[:n]


def _inputs(tmp_path, model_uri, calibration):
    (tmp_path / "input").mkdir(exist_ok=True)
    images, metadata = _unit_images(30, seed_offset=57)
    if not any((tmp_path / "input").iterdir()):
        write_image_folder(
            tmp_path / "input", images[:30], metadata.iloc[:30].drop(columns="alloy"), [40, 50, 80]
        )
    inference = {"input": str(tmp_path / "input"), "model_uri": model_uri}
    unit = {"calibration": None if calibration is None else str(calibration), "folds": 3}
    return inference, unit, read_inputs(inference, DISABLED, "unused", GENERATION, {}, unit)


def test_sets_refitted_on_the_units_labelled_folder_are_the_ones_its_predictions_carry(tmp_path, model_uri):
    metadata = _labelled(tmp_path / "labelled")
    inference, unit, (folder, _, labelled) = _inputs(tmp_path, model_uri, tmp_path / "labelled")
    assert labelled.images.shape == (90, 3, 16, 16)
    record, report = fit_unit_conformal(labelled, inference, unit, "unused")
    counts = metadata["alloy"].astype(str).value_counts().to_dict()
    assert record["class_counts"] == {alloy: counts.get(alloy, 0) for alloy in record["class_quantiles"]}
    assert record["model_uri"] == model_uri and record["fitted_on"] == str(tmp_path / "labelled")
    assert set(record["half_widths"]) == {"thickness_mm", "absorption"}
    assert record["check"]["folds"] == 3 and record["check"]["specimens"] == metadata["specimen_id"].nunique()
    assert sum(row["n"] for row in record["check"]["per_class"].values()) == 90
    assert "| 1050 |" in report and "refit coverage" in report
    assert "fewer than 200 labelled images of 1050 (" in record["advice"] and record["advice"] in report

    predictions = predict_folder(folder, DesignationScores(skipped="not fitted"), record, inference, "unused")
    assert (predictions["conformal_fitted_on"] == str(tmp_path / "labelled")).all()
    for alloy, q in record["class_quantiles"].items():
        inside = predictions["alloy_set"].str.split("|").apply(lambda m, a=alloy: a in m)
        assert (inside == (1 - predictions[f"prob_{alloy}"] <= q)).all()
    width = record["half_widths"]["thickness_mm"]
    np.testing.assert_allclose(predictions["thickness_mm_high"] - predictions["thickness_mm"], width)

    _, _, (_, _, none) = _inputs(tmp_path, model_uri, None)
    skipped, text = fit_unit_conformal(none, inference, {"calibration": None}, "unused")
    assert none == NOT_REFITTED  # a Kedro dataset holds no None
    assert "calibration: null): the model's own sets" in skipped["skipped"] and "model's own sets" in text
    own = predict_folder(folder, DesignationScores(skipped="not fitted"), skipped, inference, "unused")
    assert (own["conformal_fitted_on"] != str(tmp_path / "labelled")).all()
    assert (own["thickness_mm_high"] - own["thickness_mm"] != width).all()


def test_a_model_logged_before_it_took_refit_sets_gets_them_applied_to_its_answers(
    tmp_path, model_uri, monkeypatch
):
    from alloy_mtl.pipelines.inference import nodes

    _labelled(tmp_path / "labelled")
    inference, unit, (folder, _, labelled) = _inputs(tmp_path, model_uri, tmp_path / "labelled")
    record, _ = fit_unit_conformal(labelled, inference, unit, "unused")
    current = predict_folder(folder, DesignationScores(skipped="not fitted"), record, inference, "unused")
    original = nodes.predict_prepared

    def old_model(*args, conformal_sets=None, **kwargs):  # ignores the param, has no such column
        return original(*args, **kwargs).drop(columns="conformal_fitted_on")

    monkeypatch.setattr(nodes, "predict_prepared", old_model)
    old = predict_folder(folder, DesignationScores(skipped="not fitted"), record, inference, "unused")
    assert list(old.columns) == list(current.columns)
    for column in ("alloy_set", "alloy_set_size", "conformal_fitted_on"):
        assert old[column].tolist() == current[column].tolist(), column
    np.testing.assert_allclose(old["thickness_mm_low"], current["thickness_mm_low"])


def test_a_bad_labelled_folder_is_named_beside_the_input_folders_problem_before_anything_is_predicted(
    tmp_path, model_uri
):
    (tmp_path / "labelled").mkdir()
    (tmp_path / "labelled/metadata.csv").write_text("image_id,alloy,path\na,1050,missing.png\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as raised:
        read_inputs(
            {"input": str(tmp_path / "empty"), "model_uri": model_uri},
            DISABLED,
            "unused",
            GENERATION,
            {},
            {"calibration": str(tmp_path / "labelled")},
        )
    message = str(raised.value)
    assert "inference.input" in message and "holds no" in message
    assert f"unit_conformal.calibration: '{tmp_path / 'labelled'}'" in message and "specimen_id" in message
    with pytest.raises(
        ValueError, match=r"inference.unit_conformal.calibration: '.*nowhere' is not a folder"
    ):
        read_inputs(
            {"input": str(tmp_path / "empty"), "model_uri": model_uri},
            DISABLED,
            "unused",
            GENERATION,
            {},
            {"calibration": str(tmp_path / "nowhere")},
        )


def test_a_labelled_folder_with_too_few_images_of_an_alloy_is_refused_naming_it(tmp_path, model_uri):
    metadata = _labelled(tmp_path / "labelled", n=25)
    inference, unit, (_, _, labelled) = _inputs(tmp_path, model_uri, tmp_path / "labelled")
    with pytest.raises(ValueError) as raised:
        fit_unit_conformal(labelled, inference, unit, "unused")
    message = str(raised.value)
    fewest = metadata["alloy"].astype(str).value_counts()
    assert f"calibration: '{tmp_path / 'labelled'}'" in message and "at least 9 each" in message
    assert f"{fewest.idxmin()} has {fewest.min()}" in message


def test_a_labelled_folder_of_other_channels_or_not_square_images_is_refused_naming_both(tmp_path):
    from alloy_mtl.tracking.labelled_folder import read_labelled

    images, metadata = _unit_images(30, seed_offset=31)
    write_image_folder(tmp_path / "labelled", images[:30, :2, :, :14], metadata.iloc[:30], [40, 50])
    with pytest.raises(ValueError) as raised:
        read_labelled(tmp_path / "labelled", 3, 8)
    message = str(raised.value)
    assert message.startswith(f"parameters inference.unit_conformal.calibration: '{tmp_path / 'labelled'}'")
    assert "2-channel images, the model takes 3" in message and "16x14: not square" in message
