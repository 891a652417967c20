"""The served pyfunc: preprocessing, de-standardisation, models-from-code logging and loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException

from alloy_mtl.mtl.loading.resize import resize_images
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.tracking import pyfunc_model
from alloy_mtl.tracking.model_logging import PYFUNC_FILE, log_bundle_model
from alloy_mtl.tracking.pyfunc_model import predict_frame, to_intensity
from alloy_mtl.tracking.served_code import SERVED_PREFIX, module_closure


def _wedge(n: int = 1, chans: int = 1, size: int = 4) -> np.ndarray:
    """I/I0 falling across each image, as a wedge's radiograph does."""
    return np.broadcast_to(np.linspace(0.8, 0.2, size), (n, chans, size, size)).astype(np.float32)


def test_bit_depths_scale_like_the_ingest_reader():
    counts = np.array([[[[0, 255]]]], dtype=np.uint8)
    np.testing.assert_allclose(to_intensity(counts), [[[[0.0, 1.0]]]])
    wide = np.array([[[[0, 65535]]]], dtype=np.uint16)
    np.testing.assert_allclose(to_intensity(wide, "16"), [[[[0.0, 1.0]]]])
    np.testing.assert_allclose(to_intensity(np.array([[[[0.0, 200.0]]]]), "8"), [[[[0.0, 200 / 255]]]])
    np.testing.assert_allclose(
        to_intensity(np.array([[[[100.0, 0.0]]]]), "16"), [[[[100 / 65535, 0]]]], rtol=1e-6
    )
    np.testing.assert_allclose(to_intensity(np.array([[[[819.0, 0.0]]]]), "12"), [[[[0.2, 0]]]], rtol=1e-4)
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
        # counts of an unknown bit depth: a 12-bit detector's read as 16-bit answered confidently and wrongly
        (np.round(_wedge() * 4095), "auto", r"up to 3276 look like detector counts; pass params bit_depth"),
        (np.round(_wedge() * 4095).astype(np.uint16), "auto", r"uint16 pixels .* pass params bit_depth"),
        # I/I0 no plate can give, in the units that tell what went wrong
        (np.full((1, 1, 2, 2), -5.0), "float", r"I/I0 outside \[-0.05, 1.25\] .* got \[-5, -5\]"),
        (_wedge() * 100.3, "auto", r"I/I0 outside .* in image 0 .*: got \[20.06, 80.24\]"),
        (np.full((2, 1, 4, 4), 0.5), "auto", r"constant images 0, 1 .*every pixel 0.5"),
        (np.zeros((3, 1, 4, 4), dtype=np.uint8), "auto", r"constant images 0, 1, 2"),
    ],
)
def test_bad_input_is_named(images, bit_depth, message):
    with pytest.raises(ValueError, match=message):
        to_intensity(images, bit_depth)


def test_every_kind_of_problem_is_named_at_once_and_the_size_is_checked_before_conversion():
    batch = np.concatenate([_wedge(7), np.full((1, 1, 4, 4), 0.4), _wedge() - 3.0]).astype(np.float32)
    batch[:6] += 2.0
    with pytest.raises(ValueError) as refused:
        to_intensity(batch)
    message = str(refused.value)
    assert "images 0, 1, 2, 3, 4 and 2 more (of the batch, from 0)" in message  # outside: 0-5 and 8
    assert "constant image 7 " in message
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4, 4\) holds 96 pixel values, more than the 95"):
        to_intensity(np.zeros((2, 3, 4, 4), dtype=object), max_values=95)  # object: converting would fail


def test_a_refusal_keeps_its_own_message_where_the_scoring_server_rewrites_it():
    refused = pyfunc_model.InputRefused("input: constant image 0")
    refused.message = (
        f"Failed to predict data '{np.zeros(3)}'. \nError: {refused.message}"  # what MLflow does
    )
    assert refused.message == "input: constant image 0"
    assert json.loads(refused.serialize_as_json())["message"] == "input: constant image 0"
    assert refused.get_http_status_code() == 400
    assert isinstance(refused, ValueError)


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
        "alloy", "prob_1050", "prob_2017", "prob_5083", "prob_6082", "prob_7075", "thickness_mm", "absorption",
        "ood_score", "ood_threshold", "unknown_reason",
        "alloy_set", "alloy_set_size", "thickness_mm_low", "thickness_mm_high", "absorption_low", "absorption_high",
        "conformal_fitted_on",
    ]  # fmt: skip
    text = ["alloy", "unknown_reason", "alloy_set", "conformal_fitted_on"]
    numbers = served.drop(columns=text).astype(float)  # unfitted scores come as None (JSON null)
    np.testing.assert_allclose(numbers, expected.drop(columns=text), rtol=1e-5)
    assert (served[text] == expected[text]).all().all()
    # the factory's bundle carries no fitted score: answered as before, as null, never the non-JSON token NaN
    assert served["ood_score"].isna().all() and served["ood_score"].tolist() == [None] * 4
    json.dumps(served.to_dict("records"), allow_nan=False)
    np.testing.assert_allclose(served.filter(like="prob_").sum(axis=1), 1.0, rtol=1e-5)
    # 16-bit counts give the same answer as their I/I0
    counts = np.round(images * 65535).astype(np.float32)
    np.testing.assert_allclose(
        loaded.predict(counts, params={"bit_depth": "16"})["thickness_mm"], served["thickness_mm"], rtol=1e-3
    )
    # the model downsamples a larger square radiograph to its training size and refuses, with its own
    # message, any other shape, channel count or a constant image
    assert loaded.predict(_wedge(1, 3, 16)).shape == (1, 18)
    with pytest.raises(MlflowException, match=r"16x12: not square"):
        loaded.predict(_wedge(1, 3, 16)[..., :12])
    with pytest.raises(MlflowException, match=r"2 channel\(s\) per image, but the model was trained on 3"):
        loaded.predict(_wedge(1, 2, 8))
    with pytest.raises(MlflowException, match=r"constant image 0 .*every pixel 0.5"):
        loaded.predict(np.full((1, 3, 8, 8), 0.5, np.float32))
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
    info = log_bundle_model(bundle, run.info.run_id, instrument={"kv": [41.6, 52.0], "al_filter_mm": 1.6})
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.metadata.metadata["instrument_keys"] == ["kv_scale", "al_filter_mm"]
    assert loaded.metadata.metadata["instrument"] == {"kv": [41.6, 52.0], "al_filter_mm": 1.6}
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


def _fitted_bundle(bundle_factory) -> dict:
    """The factory's bundle with an unknown-material score fitted on plates of I/I0 0.4-0.6."""
    bundle = bundle_factory(in_chans=3, image_size=8)
    model = load_model(bundle)
    rng = np.random.default_rng(1)
    known = torch.from_numpy(rng.uniform(0.4, 0.6, (300, 3, 8, 8)).astype(np.float32))
    with torch.inference_mode():
        features = model.encode(known)
    model.ood.fit(features[:200], torch.arange(200) % 5)
    model.ood.set_reference(model.ood.distances(features[200:]).min(dim=1).values)
    return {**bundle, "state_dict": model.state_dict()}


def test_an_image_unlike_the_training_images_is_answered_unknown_with_its_reason(bundle_factory):
    bundle = _fitted_bundle(bundle_factory)
    model = load_model(bundle)
    rng = np.random.default_rng(2)
    known = rng.uniform(0.4, 0.6, (20, 3, 8, 8)).astype(np.float32)
    opaque = np.full((2, 3, 8, 8), 0.001, dtype=np.float32) + rng.uniform(0, 1e-4, (2, 3, 8, 8)).astype(
        np.float32
    )
    frame = predict_frame(model, bundle, np.concatenate([known, opaque]))
    assert (frame["alloy"].iloc[20:] == "unknown").all()
    assert (
        frame["unknown_reason"]
        .iloc[20:]
        .str.contains(r"unlike every trained alloy: score .* \(reject_rate 0.01\)")
        .all()
    )
    assert (frame["ood_threshold"] == model.ood.threshold(0.01)).all()
    assert (frame["alloy"].iloc[:20] != "unknown").mean() >= 0.9
    assert (frame["unknown_reason"].iloc[:20] == "").sum() == (frame["alloy"].iloc[:20] != "unknown").sum()
    # a higher rate lowers the threshold: more answers withheld, never fewer
    strict = predict_frame(model, bundle, known, reject_rate=0.5)
    assert (strict["alloy"] == "unknown").sum() >= (frame["alloy"].iloc[:20] == "unknown").sum()
    assert strict["ood_threshold"].iloc[0] < frame["ood_threshold"].iloc[0]
    with pytest.raises(ValueError, match=r"params reject_rate: expected a fraction in \[0, 1\), got 'x'"):
        predict_frame(model, bundle, known, reject_rate="x")


def _with_sets(bundle: dict, rng: np.random.Generator) -> tuple[dict, torch.nn.Module]:
    """``bundle`` with conformal sets fitted on random answers, and its model."""
    model = load_model(bundle)
    probs = rng.dirichlet(np.ones(5), 500)
    model.conformal.fit(
        probs,
        probs.argmax(axis=1),
        {"thickness": rng.uniform(0, 2, 500), "absorption": rng.uniform(0, 0.1, 500)},
    )
    return {**bundle, "state_dict": model.state_dict()}, model


def test_conformal_sets_and_intervals_are_in_the_answer(bundle_factory):
    rng = np.random.default_rng(4)
    bundle, model = _with_sets(bundle_factory(in_chans=3, image_size=8), rng)
    frame = predict_frame(load_model(bundle), bundle, rng.uniform(0.2, 0.9, (6, 3, 8, 8)).astype(np.float32))
    width = model.conformal.half_width("thickness")
    np.testing.assert_allclose(frame["thickness_mm_high"] - frame["thickness_mm"], width)
    np.testing.assert_allclose(frame["thickness_mm"] - frame["thickness_mm_low"], width)
    members = model.conformal.sets(
        frame[[f"prob_{a}" for a in ("1050", "2017", "5083", "6082", "7075")]].to_numpy()
    )
    assert frame["alloy_set_size"].tolist() == members.sum(axis=1).tolist()
    for row, inside in zip(frame["alloy_set"], members, strict=True):
        assert row.split("|") == [
            a for a, keep in zip(("1050", "2017", "5083", "6082", "7075"), inside, strict=True) if keep
        ] or (row == "" and not inside.any())


def test_sets_given_with_a_request_replace_the_models_and_a_bad_one_is_refused_naming_every_problem(
    bundle_factory,
):
    rng = np.random.default_rng(5)
    bundle, _ = _with_sets(bundle_factory(in_chans=3, image_size=8), rng)
    images = rng.uniform(0.2, 0.9, (40, 3, 8, 8)).astype(np.float32)
    alloys = ("1050", "2017", "5083", "6082", "7075")
    given = {
        "class_quantiles": dict(zip(alloys, (0.2, 0.5, 0.7, 0.9, 1.0), strict=True)),
        "half_widths": {"thickness_mm": 0.25},
        "fitted_on": "/lab/unit7",
        "check": {"folds": 5},  # the rest of unit_conformal.json rides along unread
    }
    own = predict_frame(load_model(bundle), bundle, images)
    refit = predict_frame(load_model(bundle), bundle, images, conformal_sets=json.dumps(given))
    assert (own["conformal_fitted_on"] == "model").all() and (
        refit["conformal_fitted_on"] == "/lab/unit7"
    ).all()
    for alloy, q in given["class_quantiles"].items():
        inside = refit["alloy_set"].str.split("|").apply(lambda m, a=alloy: a in m)
        assert (inside == (1 - refit[f"prob_{alloy}"] <= q)).all()
    assert (refit["alloy_set_size"] == refit["alloy_set"].str.split("|").apply(len)).all()
    assert (refit["alloy_set"] != own["alloy_set"]).any()
    np.testing.assert_allclose(refit["thickness_mm_high"] - refit["thickness_mm"], 0.25)
    np.testing.assert_allclose(
        refit["absorption_high"], own["absorption_high"]
    )  # no width given: the model's

    served = pyfunc_model.AlloyMtlModel()
    served.bundle, served.model = bundle, load_model(bundle)
    bad = {
        "class_quantiles": {"1050": 0.2, "2017": -1, "5083": "x", "6082": 0.9, "7075": 1.0},
        "half_widths": {"thickness_mm": float("nan"), "density": 0.1},
    }
    with pytest.raises(pyfunc_model.InputRefused) as refused:
        served.predict(None, images, params={"conformal_sets": json.dumps(bad)})
    message = refused.value.message
    assert message.startswith("params conformal_sets: ")
    assert "2017: expected a non-negative number, got -1" in message and "5083: expected" in message
    assert "thickness_mm: expected a non-negative number, got nan" in message
    assert "['density'] are not among the model's targets" in message
    missing = {"class_quantiles": {"1050": 0.2}}
    with pytest.raises(pyfunc_model.InputRefused, match=r"expected one threshold per class \['1050', '2017'"):
        served.predict(None, images, params={"conformal_sets": json.dumps(missing)})
    listed = {"class_quantiles": given["class_quantiles"], "half_widths": [0.25]}
    with pytest.raises(
        pyfunc_model.InputRefused, match=r"half_widths: expected an object of target -> width"
    ):
        served.predict(None, images, params={"conformal_sets": json.dumps(listed)})
    with pytest.raises(pyfunc_model.InputRefused, match=r"conformal_sets: not JSON"):
        served.predict(None, images, params={"conformal_sets": "{class_quantiles"})
