"""Split-conformal sets and intervals carried in the model, checked against MAPIE on the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from alloy_mtl.constants import ALLOYS
from alloy_mtl.mtl.models.conformal import ConformalSets, conformal_quantile
from alloy_mtl.mtl.models.multitask import build_model, load_model
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.tasks import parse_tasks
from tests.mtl.test_experiment import _data, _params


class _Probabilities(ClassifierMixin, BaseEstimator):
    """A 'fitted' classifier whose input is its own predicted probabilities."""

    def fit(self, x, y):
        self.classes_ = np.arange(x.shape[1])
        return self

    def predict_proba(self, x):
        return np.asarray(x)

    def predict(self, x):
        return np.asarray(x).argmax(axis=1)


class _Values(RegressorMixin, BaseEstimator):
    """A 'fitted' regressor whose input is its own prediction."""

    def fit(self, x, y):
        self.n_features_in_ = 1
        return self

    def predict(self, x):
        return np.asarray(x)[:, 0]


def _probs(n: int, seed: int, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = np.array([0.55, 0.3, 0.1, 0.05][:k])
    labels = rng.choice(k, n, p=weights / weights.sum())  # long-tailed
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


def test_class_conditional_sets_equal_mapies_lac_sets_conformalized_on_each_class():
    from mapie.classification import SplitConformalClassifier

    probs, labels = _probs(600, 0)
    test, _ = _probs(200, 1)
    sets = ConformalSets(4, [])
    report = sets.fit(probs, labels, {}, coverage=0.9)
    ours = sets.sets(test)
    for c in range(4):
        rows = labels == c
        estimator = _Probabilities().fit(probs, labels)
        mapie = SplitConformalClassifier(estimator, confidence_level=0.9, conformity_score="lac", prefit=True)
        mapie.conformalize(probs[rows], labels[rows])
        theirs = mapie.predict_set(test)[1][:, c, 0]
        np.testing.assert_array_equal(ours[:, c], theirs, err_msg=f"class {c}")
    assert report["class_counts"] == [int((labels == c).sum()) for c in range(4)]


def test_intervals_equal_mapies_split_conformal_on_absolute_residuals():
    from mapie.regression import SplitConformalRegressor

    rng = np.random.default_rng(3)
    pred, truth = rng.normal(5, 2, 400), None
    truth = pred + rng.standard_t(3, 400)
    sets = ConformalSets(2, ["thickness"])
    sets.fit(np.full((4, 2), 0.5), np.array([0, 1, 0, 1]), {"thickness": np.abs(truth - pred)}, coverage=0.8)
    mapie = SplitConformalRegressor(_Values().fit(pred[:, None], truth), confidence_level=0.8, prefit=True)
    mapie.conformalize(pred[:, None], truth)
    low_high = mapie.predict_interval(np.array([[0.0]]))[1][0, :, 0]
    assert low_high == pytest.approx([-sets.half_width("thickness"), sets.half_width("thickness")])


def test_every_class_is_covered_at_the_rate_on_fresh_exchangeable_data_the_tail_too():
    probs, labels = _probs(20000, 0)  # 1,000 validation images of the rarest class: coverage sd 0.01
    sets = ConformalSets(4, [])
    sets.fit(probs, labels, {}, coverage=0.9)
    fresh, fresh_labels = _probs(40000, 1)
    covered = sets.sets(fresh)[np.arange(len(fresh)), fresh_labels]
    for c in range(4):
        assert covered[fresh_labels == c].mean() == pytest.approx(0.9, abs=0.03), c


def test_quantile_needs_enough_points_and_a_class_without_them_is_always_in_the_set():
    assert conformal_quantile(np.arange(1.0, 10.0), 0.9) == 9.0  # ceil(10 x 0.9) = 9 <= 9: the largest
    assert conformal_quantile(np.arange(1.0, 20.0), 0.9) == 18.0  # ceil(20 x 0.9) = 18th smallest
    assert conformal_quantile(np.arange(1.0, 5.0), 0.9) == math.inf
    sets = ConformalSets(2, [])
    sets.fit(np.array([[0.9, 0.1]] * 30), np.zeros(30, dtype=int), {}, coverage=0.9)
    assert sets.sets(np.array([[0.99, 0.01]]))[0].tolist() == [True, True]  # class 1: no validation image
    with pytest.raises(ValueError, match=r"coverage: expected a fraction in \(0, 1\), got 1.5"):
        sets.fit(np.zeros((2, 2)), np.zeros(2), {}, coverage=1.5)


def test_sets_travel_with_the_model_and_old_bundles_load_them_unfitted():
    params = {
        "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 3, "loss": "cross_entropy"},
        "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
    }
    model = build_model("fnn", 1, 8, parse_tasks(params), fnn_hidden=(8,))
    old_state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("conformal.")}
    probs, labels = _probs(300, 0, k=3)
    model.conformal.fit(probs, labels, {"thickness": np.linspace(0, 1, 300)}, coverage=0.9)
    bundle = {
        "arch": "fnn", "in_chans": 1, "image_size": 8, "activation": None, "tasks": params,
        "model_options": {"fnn_hidden": [8]}, "state_dict": model.state_dict(),
    }  # fmt: skip
    loaded = load_model(bundle).conformal
    assert loaded.fitted and loaded.half_width("thickness") == pytest.approx(
        model.conformal.half_width("thickness")
    )
    torch.testing.assert_close(loaded.class_quantiles, model.conformal.class_quantiles)
    assert not load_model({**bundle, "state_dict": old_state}).conformal.fitted


def test_training_fits_the_sets_on_the_conformal_data_given_instead_of_the_validation_split():
    images, metadata = _data(10)  # 2 validation images per alloy
    extra_meta = pd.DataFrame(
        {"image_id": [f"c-{i}" for i in range(60)], "specimen_id": [f"c-{i}" for i in range(60)]}
    ).assign(alloy=[ALLOYS[i % 5] for i in range(60)], thickness_mm=np.linspace(1.0, 6.0, 60))
    extra = np.random.default_rng(1).random((60, 1, 16, 16)).astype(np.float32)
    params = _params(epochs=1, conformal_set="generated")
    on_val = train_from_params(images, metadata, params).summary["conformal"]
    on_extra = train_from_params(
        images, metadata, params, conformal_data=lambda: (extra, extra_meta)
    ).summary["conformal"]
    assert on_val["fitted_on"] == "validation_split" and on_val["class_counts"] == [2] * 5
    assert on_extra["fitted_on"] == "generated" and on_extra["class_counts"] == [12] * 5
