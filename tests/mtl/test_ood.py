"""The unknown-material score a model carries: Mahalanobis distance of its features, fitted after training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, make_dataloader
from alloy_mtl.mtl.models.multitask import build_model, load_model
from alloy_mtl.mtl.models.ood import FeatureDensity
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.ood import fit_ood

TASK_PARAMS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 3, "loss": "cross_entropy"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
}
TASKS = parse_tasks(TASK_PARAMS)


def _clusters(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    labels = np.repeat(np.arange(3), n_per_class)
    features = centres[labels] + rng.normal(0.0, [1.0, 0.5, 0.2], (len(labels), 3))
    return torch.tensor(features, dtype=torch.float32), torch.tensor(labels)


def test_far_features_score_above_the_threshold_and_known_ones_below_at_about_the_stated_rate():
    density = FeatureDensity(3, 3)
    assert not density.fitted
    assert torch.isnan(density(torch.zeros(2, 3))).all()
    assert np.isnan(density.threshold(0.05))
    train, labels = _clusters(400, 0)
    density.fit(train, labels)
    val, _ = _clusters(400, 1)
    density.set_reference(density.distances(val).min(dim=1).values)
    assert density.fitted
    test, _ = _clusters(2000, 2)
    threshold = density.threshold(0.05)
    rejected = float((density(test) > threshold).float().mean())
    assert 0.03 < rejected < 0.07
    # along the smallest-variance direction, 2 units is 10 sd away: unlike every class
    far = torch.tensor([[0.0, 0.0, 2.0], [20.0, 20.0, 0.0]])
    assert (density(far) > density.threshold(0.0)).all()
    assert density.threshold(0.01) > threshold
    with pytest.raises(ValueError, match=r"reject_rate: expected a fraction in \[0, 1\), got 1.0"):
        density.threshold(1.0)


def test_matches_pytorch_ood_mahalanobis_up_to_its_unnormalised_covariance():
    from pytorch_ood.detector import Mahalanobis

    train, labels = _clusters(300, 0)
    test, _ = _clusters(50, 3)
    ours = FeatureDensity(3, 3).fit(train, labels)
    theirs = Mahalanobis(None).fit_features(train, labels)
    # pytorch-ood sums the centred outer products without dividing by N and scores 0.5 d2: its scores are
    # 0.5 x ours / N (up to the ridges: relative 1e-3 here, absolute 1e-6 there)
    ours_d = ours.distances(test).min(dim=1).values
    theirs_d = 2.0 * theirs.predict_features(test)
    np.testing.assert_allclose(ours_d.numpy() / len(train), theirs_d.numpy(), rtol=2e-2)


def test_every_class_needs_training_features():
    features, labels = _clusters(10, 0)
    with pytest.raises(ValueError, match=r"classes \[2\] have no training features \(of 3\)"):
        FeatureDensity(3, 3).fit(features[labels < 2], labels[labels < 2])


def _loader(n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = (0.3 + 0.15 * labels[:, None, None, None] + rng.normal(0, 0.02, (n, 1, 8, 8))).astype(np.float32)
    targets = {"alloy": labels, "thickness": rng.normal(0, 1, n).astype(np.float32)}
    return make_dataloader(ArrayTaskDataset(images, targets), 16)


def test_fit_ood_fits_the_model_and_the_score_survives_the_bundle_while_old_bundles_load_unfitted():
    torch.manual_seed(0)
    model = build_model("fnn", 1, 8, TASKS, fnn_hidden=(16,))
    old_state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("ood.")}
    report = fit_ood(model, _loader(120, 0), _loader(60, 1), TASKS)
    assert model.ood.fitted
    assert report["task"] == "alloy" and report["n_train"] == 120 and report["n_val"] == 60
    assert report["val_score_q50"] < report["val_score_q99"]
    known = next(iter(_loader(16, 2)))[0]
    outputs, score = model.predict_scored(known)
    assert set(outputs) == {"alloy", "thickness"} and torch.isfinite(score).all()
    bundle = {
        "arch": "fnn", "in_chans": 1, "image_size": 8, "activation": None, "tasks": TASK_PARAMS,
        "model_options": {"fnn_hidden": [16]}, "state_dict": model.state_dict(),
    }  # fmt: skip
    torch.testing.assert_close(load_model(bundle).predict_scored(known)[1], score)
    old = load_model({**bundle, "state_dict": old_state})  # a bundle saved before the score existed
    assert not old.ood.fitted
    assert torch.isnan(old.predict_scored(known)[1]).all()


def test_a_class_without_training_images_leaves_the_score_unfitted_rather_than_failing_the_run(caplog):
    torch.manual_seed(0)
    model = build_model("fnn", 1, 8, TASKS, fnn_hidden=(16,))
    rng = np.random.default_rng(0)
    images = rng.uniform(0.3, 0.6, (20, 1, 8, 8)).astype(np.float32)
    targets = {
        "alloy": np.arange(20) % 2,
        "thickness": np.zeros(20, dtype=np.float32),
    }  # class 2 never occurs
    train = make_dataloader(ArrayTaskDataset(images, targets), 8)
    report = fit_ood(model, train, train, TASKS)
    assert report["fitted"] is False and "classes [2] have no training features" in report["reason"]
    assert not model.ood.fitted
    assert "unknown-material score not fitted" in caplog.text


def test_a_model_without_a_classification_task_has_no_score():
    tasks = parse_tasks({"thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"}})
    model = build_model("fnn", 1, 8, tasks, fnn_hidden=(16,))
    assert model.ood is None
    assert fit_ood(model, _loader(30, 0), _loader(30, 1), tasks) == {}
    assert torch.isnan(model.predict_scored(torch.rand(2, 1, 8, 8))[1]).all()


def test_the_score_is_computed_in_float32_under_bf16_autocast():
    train, labels = _clusters(300, 0)
    density = FeatureDensity(3, 3).fit(train, labels)
    density.set_reference(density.distances(train).min(dim=1).values)
    test, _ = _clusters(20, 5)
    plain = density(test)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        autocast = density(test)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, plain)
