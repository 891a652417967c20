"""The evaluation pipeline's unknown-material step: a model scores the generated OOD set."""

from __future__ import annotations

import numpy as np
import torch

from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.pipelines.evaluation.nodes import predict_ood_set
from tests.tracking.conftest import make_bundle

GENERATION = {"seed": 5, "n_images": 60, "image_size": 8, "min_images_per_class": 4}
EVALUATION = {"evaluation_set": {"n_images": 15}, "ood": {"images_per_material": 2}}


def _fitted_bundle() -> dict:
    bundle = make_bundle(in_chans=3, image_size=8)
    model = load_model(bundle)
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        features = model.encode(torch.from_numpy(rng.uniform(0.2, 0.8, (200, 3, 8, 8)).astype(np.float32)))
    model.ood.fit(features[:150], torch.arange(150) % 5)
    model.ood.set_reference(model.ood.distances(features[150:]).min(dim=1).values)
    return {**bundle, "state_dict": model.state_dict()}


def test_every_family_is_scored_and_refused_images_count_as_caught():
    bundle = _fitted_bundle()
    frame = predict_ood_set(bundle, {}, GENERATION, EVALUATION)
    assert frame["family"].value_counts().to_dict() == {
        "near": 10,
        "far": 8,
        "open_beam": 2,
        "blank": 2,
        "dark": 2,
    }
    assert {"material", "alloy_pred", "max_prob", "ood_score", "ood_threshold", "refused"} <= set(
        frame.columns
    )
    threshold = load_model(bundle).ood.threshold(0.01)
    assert np.allclose(frame["ood_threshold"], threshold)
    assert np.isinf(frame.loc[frame["refused"], "ood_score"]).all()
    assert np.isfinite(frame.loc[~frame["refused"], "ood_score"]).all()
    assert predict_ood_set(bundle, {}, GENERATION, {**EVALUATION, "ood": {"enabled": False}}).empty
