"""The served pyfunc: preprocessing, de-standardisation, models-from-code logging and loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alloy_mtl.mtl.loading.resize import resize_images
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.tracking import pyfunc_model
from alloy_mtl.tracking.model_logging import PYFUNC_FILE, log_bundle_model
from alloy_mtl.tracking.pyfunc_model import predict_frame, to_intensity
from alloy_mtl.tracking.served_code import SERVED_PREFIX, module_closure


def test_bit_depths_scale_like_the_ingest_reader():
    counts = np.array([[[[0, 255]]]], dtype=np.uint8)
    np.testing.assert_allclose(to_intensity(counts), [[[[0.0, 1.0]]]])
    wide = np.array([[[[0, 65535]]]], dtype=np.uint16)
    np.testing.assert_allclose(to_intensity(wide), [[[[0.0, 1.0]]]])
    # counts sent as numbers (JSON): integer-valued values above 1 are counts
    np.testing.assert_allclose(to_intensity(np.array([[[[0.0, 200.0]]]])), [[[[0.0, 200 / 255]]]])
    np.testing.assert_allclose(to_intensity(np.array([[[[0.0, 40000.0]]]])), [[[[0.0, 40000 / 65535]]]])
    np.testing.assert_allclose(to_intensity(np.array([[[[100.0]]]]), "16"), [[[[100 / 65535]]]], rtol=1e-6)
    np.testing.assert_allclose(to_intensity(np.array([[[[819.0]]]]), "12"), [[[[0.2]]]], rtol=1e-4)
    intensity = np.array([[[[0.25, 1.07]]]], dtype=np.float32)  # I/I0 may exceed 1 with noise
    np.testing.assert_array_equal(to_intensity(intensity), intensity)


@pytest.mark.parametrize(
    ("images", "bit_depth", "message"),
    [
        (np.zeros((3, 8, 8)), "auto", r"expected N x C x H x W radiographs, got shape \(3, 8, 8\)"),
        (np.full((1, 1, 2, 2), np.nan), "auto", r"4 NaN/inf pixel"),
        (np.zeros((1, 1, 2, 2)), "24", r"bit_depth: got '24'"),
        (np.full((1, 1, 2, 2), 5000.0), "12", r"12-bit counts must lie in \[0, 4095\]"),
        (np.full((1, 1, 2, 2), 300.0), "8", r"8-bit counts must lie in \[0, 255\]"),
        (np.full((1, 1, 2, 2), 70000.0), "auto", r"exceed 16 bits"),
    ],
)
def test_bad_input_is_named(images, bit_depth, message):
    with pytest.raises(ValueError, match=message):
        to_intensity(images, bit_depth)


def test_regression_outputs_are_destandardised_and_logits_pass_through(bundle_factory):
    model = load_model(bundle_factory())
    x = torch.rand(2, 3, 8, 8)
    raw, predicted = model(x), model.predict(x)
    torch.testing.assert_close(predicted["thickness"], raw["thickness"] * 2.0 + 4.0)
    torch.testing.assert_close(predicted["alloy"], raw["alloy"])


def test_radiographs_larger_than_the_training_size_are_downsampled_as_training_did(bundle_factory):
    bundle = bundle_factory(image_size=8)
    model = load_model(bundle)
    native = np.random.default_rng(0).uniform(0.2, 0.9, (3, 3, 32, 32)).astype(np.float32)
    downsampled = resize_images(torch.from_numpy(native), 8).numpy()
    assert downsampled.shape == (3, 3, 8, 8)
    np.testing.assert_allclose(
        predict_frame(model, bundle, native).filter(like="prob_").to_numpy(),
        predict_frame(model, bundle, downsampled).filter(like="prob_").to_numpy(),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"input: size 4x4, the model expects 8x8 or larger"):
        predict_frame(model, bundle, native[:, :, :4, :4])
    with pytest.raises(ValueError, match=r"input: size 32x16: not square"):
        predict_frame(model, bundle, native[:, :, :, :16])


def test_the_model_carries_only_the_modules_it_imports():
    files = {str(p) for p in module_closure(PYFUNC_FILE)}
    assert {"__init__.py", "mtl/__init__.py", "mtl/models/multitask.py", "mtl/tasks.py"} <= files
    assert not any(name.startswith(("data/", "pipelines/", "evaluation/", "tracking/")) for name in files)
    assert "mtl/training/trainer.py" not in files and "mtl/recipe.py" not in files


def test_logged_model_predicts_like_the_model_itself(mlflow_backend, bundle_factory, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory (MLflow's ./mlruns default)

    bundle = bundle_factory(in_chans=3, image_size=8)
    client = mlflow_backend["client"]
    run = client.create_run(mlflow_backend["experiment_id"], run_name="fnn")
    info = log_bundle_model(bundle, run.info.run_id)
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    images = np.random.default_rng(0).uniform(0.2, 0.95, (4, 3, 8, 8)).astype(np.float32)

    served = loaded.predict(images)
    expected = predict_frame(load_model(bundle), bundle, images)
    assert list(served.columns) == [
        "alloy", "prob_1050", "prob_2017", "prob_5083", "prob_6082", "prob_7075", "thickness_mm", "absorption"
    ]  # fmt: skip
    np.testing.assert_allclose(served.drop(columns="alloy"), expected.drop(columns="alloy"), rtol=1e-5)
    assert (served["alloy"] == expected["alloy"]).all()
    np.testing.assert_allclose(served.filter(like="prob_").sum(axis=1), 1.0, rtol=1e-5)
    # 16-bit counts give the same answer as their I/I0
    counts = np.round(images * 65535).astype(np.float32)
    np.testing.assert_allclose(
        loaded.predict(counts, params={"bit_depth": "16"})["thickness_mm"], served["thickness_mm"], rtol=1e-3
    )
    # the signature takes any image size with the trained channel count, and nothing else; the model
    # downsamples a larger square radiograph to its training size and names any other shape
    assert loaded.predict(np.full((1, 3, 16, 16), 0.5, np.float32)).shape == (1, 8)
    with pytest.raises(Exception, match=r"16x12: not square"):
        loaded.predict(np.full((1, 3, 16, 12), 0.5, np.float32))
    with pytest.raises(Exception, match=r"[Ss]hape"):
        loaded.predict(np.full((1, 2, 8, 8), 0.5, np.float32))
    assert info.metadata["in_chans"] == 3 and info.metadata["image_size"] == 8
    assert list(tmp_path.iterdir()) == []
    stored = mlflow_backend["root"] / "mlartifacts" / "models" / info.model_id / "artifacts"
    assert (stored / "artifacts" / "bundle.pt").is_file()
    assert [p.name.startswith(SERVED_PREFIX) for p in (stored / "code").iterdir()] == [True]
    assert mlflow_backend["client"].get_logged_model(info.model_id).source_run_id == run.info.run_id
    assert info.signature.params.to_dict()[0]["name"] == "bit_depth"
    assert (
        pyfunc_model.BUNDLE_ARTIFACT in loaded.metadata.to_dict()["flavors"]["python_function"]["artifacts"]
    )


def test_a_conditioned_model_is_served_with_its_instrument_params(
    mlflow_backend, bundle_factory, tmp_path, monkeypatch
):
    import mlflow

    monkeypatch.chdir(tmp_path)
    bundle = bundle_factory(in_chans=3, image_size=8, instrument_keys=["kv_scale", "al_filter_mm"])
    run = mlflow_backend["client"].create_run(mlflow_backend["experiment_id"], run_name="fnn")
    info = log_bundle_model(bundle, run.info.run_id)
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.metadata.metadata["instrument_keys"] == ["kv_scale", "al_filter_mm"]
    params = {p.name: p.default for p in loaded.metadata.get_params_schema().params}
    assert params["instrument_kv_scale"] == 1.0 and params["instrument_al_filter_mm"] == 1.0
    images = np.random.default_rng(0).uniform(0.2, 0.95, (4, 3, 8, 8)).astype(np.float32)
    model = load_model(bundle)
    typical = loaded.predict(images)
    np.testing.assert_allclose(
        typical["thickness_mm"], predict_frame(model, bundle, images)["thickness_mm"], rtol=1e-5
    )
    harder = loaded.predict(images, params={"instrument_kv_scale": 1.02})
    expected = predict_frame(model, bundle, images, instrument={"kv_scale": 1.02})
    np.testing.assert_allclose(harder["thickness_mm"], expected["thickness_mm"], rtol=1e-5)
    assert not np.allclose(harder["thickness_mm"], typical["thickness_mm"])
