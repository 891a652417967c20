"""Instrument-conditioned models: the settings travel as planes, join the features, and must be told."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alloy_mtl.constants import ALLOYS
from alloy_mtl.mtl.labelled_prediction import predict_images
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset
from alloy_mtl.mtl.loading.instrument_settings import conditioning_keys, settings_array
from alloy_mtl.mtl.models.conditioning import attach_settings, split_settings
from alloy_mtl.mtl.models.multitask import build_model, load_model
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.tracking.pyfunc_model import predict_frame

TASKS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "cross_entropy"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
}


def _data(varying: bool = True, n_per_split: int = 10) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "val", "test"):
        for i in range(n_per_split):
            rows.append(
                {
                    "image_id": f"{split}-{i}",
                    "specimen_id": f"{split}-{i}",
                    "alloy": ALLOYS[i % 5],
                    "thickness_mm": 1.0 + i,
                    "split": split,
                    "instrument_kv_scale": 1.0 + (0.01 * (i % 3) if varying else 0.0),
                    "instrument_al_filter_mm": 1.0 + (0.1 * (i % 2) if varying else 0.0),
                }
            )
    metadata = pd.DataFrame(rows)
    return rng.random((len(metadata), 2, 8, 8)).astype(np.float32), metadata


def _params(**overrides) -> dict:
    return {
        "arch": "fnn",
        "optimizer": "sgd",
        "lr": 0.01,
        "activation": "relu",
        "epochs": 1,
        "batch_size": 8,
        "seed": 3,
        "tasks": TASKS,
        "progress_bar": False,
        "model_options": {"fnn_pool_size": 4, "fnn_hidden": [16]},
    } | overrides


def test_settings_travel_as_planes_and_come_back():
    images = torch.rand(3, 2, 5, 5)
    settings = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    joined = attach_settings(images, settings)
    assert joined.shape == (3, 4, 5, 5)
    back_images, back_settings = split_settings(joined, 2)
    assert torch.equal(back_images, images) and torch.equal(back_settings, settings)
    with pytest.raises(ValueError, match=r"\(images, keys\)"):
        attach_settings(images, settings[:2])


def test_a_conditioned_model_reads_the_settings_and_shares_its_fusion():
    tasks = parse_tasks(TASKS)
    torch.manual_seed(0)
    model = build_model(
        "fnn", 2, 8, tasks, instrument_keys=["kv_scale"], fnn_pool_size=4, fnn_hidden=[16]
    ).eval()
    images = torch.rand(4, 2, 8, 8)
    low = model(attach_settings(images, torch.full((4, 1), 0.98)))["alloy"]
    high = model(attach_settings(images, torch.full((4, 1), 1.02)))["alloy"]
    assert not torch.allclose(low, high)
    fusion = {id(p) for p in model.fusion.parameters()}
    assert fusion <= {id(p) for p in model.shared_parameters()}
    assert model.instrument_keys == ["kv_scale"]


def test_auto_conditions_on_the_recorded_settings_that_vary():
    _, metadata = _data()
    train = np.flatnonzero(metadata["split"] == "train")
    assert conditioning_keys(metadata, train, "auto") == ["kv_scale", "al_filter_mm"]
    assert conditioning_keys(metadata, train, False) == []
    _, constant = _data(varying=False)
    assert conditioning_keys(constant, train, "auto") == []
    with pytest.raises(ValueError, match="instrument_kv_scale, instrument_al_filter_mm"):
        conditioning_keys(constant, train, True)
    broken = metadata.assign(instrument_kv_scale=metadata["instrument_kv_scale"].where(metadata.index != 0))
    with pytest.raises(ValueError, match="instrument_kv_scale: 1 training row"):
        conditioning_keys(broken, train, "auto")


def test_settings_come_from_one_instrument_or_the_metadata_and_missing_ones_are_named():
    _, metadata = _data()
    one = settings_array(["kv_scale", "al_filter_mm"], 3, instrument={"kv_scale": 1.01, "al_filter_mm": 0.9})
    assert one.shape == (3, 2) and np.allclose(one, [[1.01, 0.9]] * 3)
    recorded = settings_array(["kv_scale"], len(metadata), metadata)
    assert np.allclose(recorded[:, 0], metadata["instrument_kv_scale"])
    with pytest.raises(ValueError, match=r"al_filter_mm: missing; kv_scale: expected a finite number"):
        settings_array(["kv_scale", "al_filter_mm"], 3, instrument={"kv_scale": "hot"})
    with pytest.raises(ValueError, match="instrument_scintillator_mm"):
        settings_array(["scintillator_mm"], len(metadata), metadata)


def test_a_dataset_appends_each_rows_settings():
    images, metadata = _data()
    settings = settings_array(["kv_scale"], len(metadata), metadata)
    dataset = ArrayTaskDataset(images, {"alloy": np.zeros(len(images), dtype=np.int64)}, settings=settings)
    image, _, _ = dataset[2]
    assert image.shape == (3, 8, 8)
    assert torch.all(image[2] == float(settings[2, 0]))
    with pytest.raises(ValueError, match="settings must be"):
        ArrayTaskDataset(images, {"alloy": np.zeros(len(images), dtype=np.int64)}, settings=settings[:3])


def test_a_conditioned_bundle_predicts_with_the_instrument_it_is_told():
    images, metadata = _data()
    result = train_from_params(images, metadata, _params())
    assert result.bundle["model_options"]["instrument_keys"] == ["kv_scale", "al_filter_mm"]
    model = load_model(result.bundle)
    assert model.conditioning.typical()["kv_scale"] == pytest.approx(
        metadata.loc[metadata["split"] == "train", "instrument_kv_scale"].mean(), rel=1e-6
    )
    test = metadata[metadata["split"] == "test"].reset_index(drop=True)
    test_images = images[(metadata["split"] == "test").to_numpy()]
    low = predict_images(result.bundle, test_images, test, instrument={"kv_scale": 0.9, "al_filter_mm": 0.5})
    high = predict_images(result.bundle, test_images, test, instrument={"kv_scale": 1.1, "al_filter_mm": 1.5})
    assert not np.allclose(low["prob_1050"], high["prob_1050"])
    unknown = test.drop(columns=["instrument_kv_scale", "instrument_al_filter_mm"])
    with pytest.raises(ValueError, match="conditioned on the instrument"):
        predict_images(result.bundle, test_images, unknown)
    served = predict_frame(
        model, result.bundle, test_images, instrument={"kv_scale": 0.9, "al_filter_mm": 0.5}
    )
    assert np.allclose(served["prob_1050"], low["prob_1050"], atol=1e-5)
    with pytest.raises(ValueError, match="instrument_kv_scale: expected a finite number"):
        predict_frame(model, result.bundle, test_images, instrument={"kv_scale": "nan"})


def test_off_or_without_recorded_settings_the_model_is_unconditioned():
    images, metadata = _data()
    assert (
        "instrument_keys"
        not in train_from_params(images, metadata, _params(instrument_conditioning=False)).bundle[
            "model_options"
        ]
    )
    plain = metadata.drop(columns=["instrument_kv_scale", "instrument_al_filter_mm"])
    bundle = train_from_params(images, plain, _params()).bundle
    assert "instrument_keys" not in bundle["model_options"]
    assert load_model(bundle).conditioning is None


def test_the_wedge_summary_is_the_fitted_profiles_coefficients_and_joins_the_features():
    from alloy_mtl.mtl.models.input_transform import wedge_coefficients

    position = np.linspace(-1.0, 1.0, 8)
    attenuation = 0.5 + 0.2 * position + 0.05 * position**2
    images = torch.tensor(np.exp(-attenuation), dtype=torch.float32).expand(2, 3, 6, 8).clone()
    coefficients = wedge_coefficients(images)
    assert coefficients.shape == (2, 9)
    assert np.allclose(coefficients[0, :3].numpy(), [0.5, 0.2, 0.05], atol=1e-5)
    images_, metadata = _data()
    result = train_from_params(images_, metadata, _params(wedge_summary=True, instrument_conditioning=False))
    assert result.bundle["model_options"]["wedge_summary"] is True
    model = load_model(result.bundle)
    assert model.wedge_summary is not None and model.conditioning is None
    train = images_[(metadata["split"] == "train").to_numpy()]
    standardised = model.wedge_summary(torch.from_numpy(train))
    assert torch.allclose(standardised.mean(dim=0), torch.zeros(6), atol=1e-4)


class _ConstantBackbone(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 16), 3.0)


def test_the_image_gate_starts_closed_so_the_model_starts_from_the_summary_and_learns_to_open():
    tasks = parse_tasks(TASKS)
    model = build_model(
        "fnn", 2, 8, tasks, wedge_summary=True, image_gate=True, fnn_pool_size=4, fnn_hidden=[16]
    )
    model.backbone = _ConstantBackbone()
    x = torch.rand(16, 2, 8, 8) * 0.5 + 0.3
    summary_only = model.fusion(torch.cat([torch.zeros(16, 16), model.wedge_summary(x)], dim=1))
    assert torch.allclose(model.encode(x), summary_only)  # the backbone's features enter times 0
    assert any(p is model.image_gate for p in model.shared_parameters())
    model(x)["alloy"].logsumexp(dim=1).sum().backward()
    assert model.image_gate.grad is not None and float(model.image_gate.grad) != 0.0  # it can open
    with torch.no_grad():
        model.image_gate.fill_(1.0)
    assert not torch.allclose(model.encode(x), summary_only)
    with pytest.raises(ValueError, match="image_gate: the model joins nothing"):
        build_model("fnn", 2, 8, tasks, image_gate=True, fnn_pool_size=4, fnn_hidden=[16])
