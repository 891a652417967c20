"""Temperature scaling: fitted on validation, carried in the model, applied wherever the model answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.classification import ece_at_temperature, expected_calibration_error
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.training.calibration import ece, fit_temperature
from alloy_mtl.tracking.pyfunc_model import predict_frame

from .test_instrument_conditioning import _data, _params


def _overconfident(n: int = 4000, scale: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (z calibrated by construction), and logits ``scale * z``: overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, (n, 5))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p])
    return scale * z, labels


def test_the_fitted_temperature_undoes_overconfidence_and_ignores_unlabelled_rows():
    logits, labels = _overconfident()
    labels[:50] = -1
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.08)
    assert ece(logits, labels, temperature) < 0.02 < ece(logits, labels)
    with pytest.raises(ValueError, match="no labelled validation rows"):
        fit_temperature(logits[:3], np.full(3, -1))


def test_the_recipe_calibrates_and_the_temperature_travels_with_the_model():
    images, metadata = _data(n_per_split=20)
    result = train_from_params(images, metadata, _params(epochs=3, lr=0.2, instrument_conditioning=False))
    fitted = result.summary["calibration"]["alloy"]
    assert fitted["n_val"] == 20 and fitted["temperature"] != 1.0
    assert fitted["val_nll_after"] <= fitted["val_nll_before"] + 1e-9
    model = load_model(result.bundle)
    assert model.calibration.temperatures()["alloy"] == pytest.approx(fitted["temperature"])
    x = torch.from_numpy(images[:6])
    raw = model(x)["alloy"]
    torch.testing.assert_close(model.predict(x)["alloy"], raw / fitted["temperature"])
    served = predict_frame(model, result.bundle, images[:6])
    expected = torch.softmax(raw / fitted["temperature"], dim=1).detach().numpy()
    np.testing.assert_allclose(served[[f"prob_{a}" for a in ALLOYS]].to_numpy(), expected, rtol=1e-4)
    uncalibrated = train_from_params(
        images, metadata, _params(epochs=3, lr=0.2, instrument_conditioning=False, calibration="none")
    )
    assert uncalibrated.summary["calibration"] == {}
    assert load_model(uncalibrated.bundle).calibration.temperatures()["alloy"] == 1.0


def test_a_bundle_from_before_calibration_loads_at_temperature_one():
    images, metadata = _data()
    bundle = train_from_params(images, metadata, _params()).bundle
    old = {**bundle, "state_dict": {k: v for k, v in bundle["state_dict"].items() if "calibration" not in k}}
    assert load_model(old).calibration.temperatures() == {"alloy": 1.0}


def test_the_ece_before_calibration_is_recovered_from_the_calibrated_probabilities():
    logits, labels = _overconfident(n=1000)
    temperature = 2.5
    calibrated = torch.softmax(torch.from_numpy(logits / temperature), dim=1).numpy()
    frame = pd.DataFrame(calibrated, columns=[f"prob_{a}" for a in ALLOYS])
    frame["alloy_true"] = [ALLOYS[i] for i in labels]
    raw = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    assert ece_at_temperature(frame, temperature) == pytest.approx(expected_calibration_error(raw, labels))
    assert ece_at_temperature(frame, 1.0) == pytest.approx(expected_calibration_error(calibrated, labels))
