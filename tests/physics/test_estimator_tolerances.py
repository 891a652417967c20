"""Tolerance-aware physics-limit estimator: the batch fit of the instrument, its input checks and its modes."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from alloy_mtl.constants import ALLOYS
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument_fit import fit_instrument, nominal_instrument, parse_tolerances
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

CONFIG = SimulationConfig(seed=5, n_images=150, image_size=16, imbalance_ratio=1.0, images_per_specimen=3)
TOLERANCES = {
    "kv_scale": (0.97, 1.03),
    "al_filter_mm": (0.7, 1.3),
    "scintillator_mm": (0.15, 0.3),
    "scatter_fraction_scale": (0.5, 2.0),
    "blur_sigma_px": (0.5, 1.0),
    "dose_scale": (0.5, 2.0),
}
SHIFTED = {
    "nominal": {},
    "kv_x1.02": {"kv": tuple(1.02 * k for k in CONFIG.kv)},
    "al_filter_1.3mm": {"al_filter_mm": 1.3},
}


@cache
def _images(condition: str) -> tuple[np.ndarray, np.ndarray]:
    images, meta = simulate_dataset(dataclasses.replace(CONFIG, **SHIFTED[condition]))
    return images, meta["alloy"].to_numpy()


def _macro_ap(pred: pd.DataFrame, truth: np.ndarray) -> float:
    return float(np.mean([average_precision_score(truth == a, pred[f"prob_{a}"]) for a in ALLOYS]))


@pytest.mark.parametrize(
    ("condition", "key", "shifted_past"),
    [("kv_x1.02", "kv_scale", 1.01), ("al_filter_1.3mm", "al_filter_mm", 1.15)],
)
def test_tolerances_recover_a_shifted_beam(condition: str, key: str, shifted_past: float) -> None:
    images, truth = _images(condition)
    told_nominal = _macro_ap(PhysicsLimitEstimator(CONFIG).predict(images), truth)
    estimator = PhysicsLimitEstimator(CONFIG, tolerances=TOLERANCES, n_fit_images=80)
    told_tolerances = _macro_ap(estimator.predict(images), truth)
    assert told_tolerances >= told_nominal + 0.08, (told_nominal, told_tolerances)
    assert told_tolerances >= 0.95
    fitted = estimator.fitted_instrument
    assert fitted is not None and set(fitted) == set(TOLERANCES)
    assert all(low <= fitted[k] <= high for k, (low, high) in TOLERANCES.items())
    assert fitted[key] > shifted_past  # the fit moves the beam the way the images were shifted
    assert fitted["blur_sigma_px"] == CONFIG.blur_sigma_px and fitted["dose_scale"] == 1.0  # held at nominal


def test_tolerances_cost_little_on_the_nominal_instrument() -> None:
    images, truth = _images("nominal")
    told_nominal = _macro_ap(PhysicsLimitEstimator(CONFIG).predict(images), truth)
    told_tolerances = _macro_ap(
        PhysicsLimitEstimator(CONFIG, tolerances=TOLERANCES, n_fit_images=80).predict(images), truth
    )
    assert told_tolerances >= told_nominal - 0.02, (told_nominal, told_tolerances)


def test_point_ranges_at_the_nominal_instrument_reproduce_the_nominal_estimator() -> None:
    images, _ = _images("nominal")
    nominal = {
        "kv_scale": (1.0, 1.0),
        "al_filter_mm": (CONFIG.al_filter_mm,) * 2,
        "scintillator_mm": (CONFIG.scintillator_mm,) * 2,
    }
    estimator = PhysicsLimitEstimator(CONFIG, tolerances=nominal)
    pd.testing.assert_frame_equal(estimator.predict(images), PhysicsLimitEstimator(CONFIG).predict(images))
    assert estimator.mode == "joint" and estimator.fitted_instrument["al_filter_mm"] == CONFIG.al_filter_mm


def test_without_tolerances_nothing_is_fitted() -> None:
    estimator = PhysicsLimitEstimator(CONFIG, tolerances=None)
    estimator.predict(_images("nominal")[0][:20])
    assert estimator.mode == "nominal" and estimator.fitted_instrument is None


@pytest.mark.parametrize(
    ("tolerances", "message"),
    [
        ({"kv": (40.0, 80.0)}, "unknown key 'kv'"),
        ({"al_filter_mm": (1.3, 0.7)}, "'al_filter_mm'.*low 1.3 > high 0.7"),
        ({"scintillator_mm": (0.0, 0.3)}, "'scintillator_mm'.*> 0"),
        ({"dose_scale": (1.0,)}, "'dose_scale'.*pair"),
        ({"blur_sigma_px": (0.5, float("nan"))}, "'blur_sigma_px'.*finite"),
    ],
)
def test_bad_tolerances_raise_naming_the_key(tolerances: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PhysicsLimitEstimator(CONFIG, tolerances=tolerances)


def test_bad_mode_and_fit_size_raise() -> None:
    with pytest.raises(ValueError, match="mode"):
        PhysicsLimitEstimator(CONFIG, tolerances=TOLERANCES, mode="grid")
    with pytest.raises(ValueError, match="n_fit_images"):
        PhysicsLimitEstimator(CONFIG, tolerances=TOLERANCES, n_fit_images=0)


def test_compass_search_finds_an_interior_maximum_and_leaves_other_keys() -> None:
    tolerances = parse_tolerances(
        {"kv_scale": (0.9, 1.1), "al_filter_mm": (0.0, 2.0), "dose_scale": (0.5, 2)}
    )
    start = {"kv_scale": 1.0, "al_filter_mm": 1.0, "dose_scale": 1.0}
    fit = fit_instrument(
        lambda x: -(((x["kv_scale"] - 1.06) / 0.2) ** 2) - ((x["al_filter_mm"] - 0.4) / 2.0) ** 2,
        tolerances,
        start,
    )
    assert fit.instrument["kv_scale"] == pytest.approx(1.06, abs=0.2 / 16)
    assert fit.instrument["al_filter_mm"] == pytest.approx(0.4, abs=2.0 / 16)
    assert fit.instrument["dose_scale"] == 1.0  # not a fitted key
    assert fit.n_evaluations < 60


def test_marginal_mode_gives_posteriors() -> None:
    images, _ = _images("nominal")
    estimator = PhysicsLimitEstimator(
        CONFIG, tolerances={"kv_scale": (0.98, 1.02), "al_filter_mm": (0.9, 1.1)}, mode="marginal"
    )
    pred = estimator.predict(images[:40])
    probs = pred[[f"prob_{a}" for a in ALLOYS]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.isfinite(pred["thickness_pred"]).all() and estimator.fitted_instrument is None


def test_an_instrument_taken_as_known_is_the_one_the_fits_use() -> None:
    images, _ = _images("al_filter_1.3mm")
    estimator = PhysicsLimitEstimator(CONFIG, tolerances=TOLERANCES)
    nominal = nominal_instrument(CONFIG)
    estimator.use_instrument(nominal)
    at_nominal = estimator.goodness_of_fit(images)
    estimator.use_instrument(nominal | {"al_filter_mm": 1.3})  # the filter the images were taken with
    at_true = estimator.goodness_of_fit(images)
    assert at_true.mean() > at_nominal.mean() + 1.0
    np.testing.assert_allclose(PhysicsLimitEstimator(CONFIG).goodness_of_fit(images), at_nominal, rtol=1e-6)
