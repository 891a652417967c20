"""The gate's images and the registered versions predicting them (real logged models, real sqlite registry)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.store import XrayData
from alloy_mtl.evaluation.classification import classification_metrics
from alloy_mtl.mtl.labelled_prediction import predict_images
from alloy_mtl.tracking.model_logging import log_bundle_model
from alloy_mtl.tracking.paired_gate import TEST_SPLIT, comparer, gate_conditions
from alloy_mtl.tracking.promotion import (
    CHAMPION,
    MODEL_URI_TAG,
    PIPELINE_TAG,
    GateSettings,
    gate_markdown,
    run_gate,
)

from .conftest import make_bundle

_names = itertools.count()


def images_of(n: int, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    metadata = pd.DataFrame(
        {
            "image_id": [f"img-{seed}-{i}" for i in range(n)],
            "specimen_id": [f"spec-{i // 2}" for i in range(n)],
            "alloy": [ALLOYS[i % len(ALLOYS)] for i in range(n)],
            "thickness_mm": rng.uniform(1, 8, n),
            "absorption": rng.uniform(1, 5, n),
        }
    )
    return rng.uniform(0.1, 0.9, (n, 3, 8, 8)).astype(np.float32), metadata


def test_the_gate_compares_on_the_summarised_conditions_else_the_test_split():
    conditions = {
        name: images_of(4, i) for i, name in enumerate(("same_detector", "unseen_detector_1", "kv_x1.02"))
    }
    kinds = {"same_detector": "reference", "unseen_detector_1": "unseen_detector", "kv_x1.02": "in_tolerance"}
    assert list(gate_conditions(conditions, kinds, None)) == ["unseen_detector_1", "kv_x1.02"]

    images, metadata = images_of(6, 9)
    data = XrayData(images, metadata.assign(split=["train", "test", "val", "test", "train", "test"]))
    (name, (test_images, test_metadata)), *rest = gate_conditions({}, {}, data).items()
    assert (name, rest) == (TEST_SPLIT, [])
    assert list(test_metadata["image_id"]) == ["img-9-1", "img-9-3", "img-9-5"]
    np.testing.assert_array_equal(test_images, images[[1, 3, 5]])

    with pytest.raises(ValueError, match="no robustness suite and no split model input"):
        gate_conditions({}, {}, None)
    with pytest.raises(ValueError, match="test split is empty"):
        gate_conditions({}, {}, XrayData(images, metadata.assign(split="train")))


def test_both_registered_versions_predict_the_same_images(mlflow_backend):
    client, experiment = mlflow_backend["client"], mlflow_backend["experiment_id"]
    settings = GateSettings(
        model_name=f"alloy_mtl_paired_{next(_names)}", metric="test.classification.macro_ap"
    )
    bundles = {seed: make_bundle(seed=seed) for seed in (1, 2)}
    conditions = {"unseen_detector_1": images_of(20, 1), "kv_x1.02": images_of(20, 2)}
    built = []
    compare = comparer(
        settings.model_name,
        lambda: built.append(1) or conditions,
        None,
        n_resamples=200,
        seed=0,
        level=0.95,
    )
    decision, _ = _two_versions(client, experiment, settings, bundles.values(), lambda _child: compare)
    assert built == [1]  # only the second gate, which had a champion to compare with, built them

    def worst(bundle):
        return min(
            classification_metrics(predict_images(bundle, *pair), ALLOYS)["macro_ap"]
            for pair in conditions.values()
        )

    assert float(decision["challenger_score"]) == pytest.approx(worst(bundles[2]))
    assert float(decision["champion_score"]) == pytest.approx(worst(bundles[1]))
    assert decision["champion_version_before"] == "1" and decision["n_images"] == "40"
    assert decision["conditions"] == "unseen_detector_1,kv_x1.02"
    promoted = float(decision["difference_ci_low"]) > settings.min_margin and all(
        float(decision[f"alloy_ap_drop.{alloy}"]) <= settings.alloy_tolerance for alloy in ALLOYS
    )
    assert decision["decision"] == ("promoted" if promoted else "kept_champion")
    champion = client.get_model_version_by_alias(settings.model_name, CHAMPION).version
    assert str(champion) == ("2" if promoted else "1")
    assert "on the same images" in gate_markdown(decision)


def _two_versions(client, experiment, settings, bundles, compare_for):
    """Register ``bundles`` one training run after another, the gate deciding each; returns the last
    decision and the last run's model run id."""
    decision, child = None, None
    for bundle in bundles:
        parent = client.create_run(
            experiment, run_name="train_all", tags={PIPELINE_TAG: "train_all"}
        ).info.run_id
        child = client.create_run(experiment, run_name="fnn", tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id
        client.set_tag(child, MODEL_URI_TAG, log_bundle_model(bundle, child).model_uri)
        client.log_metric(child, settings.metric, 0.5)
        for run_id in (child, parent):
            client.set_terminated(run_id)
        decision = run_gate(client, settings, [experiment], compare=compare_for(child))
    return decision, child


@pytest.mark.parametrize("tampered", [False, True])
def test_the_challenger_reuses_its_runs_suite_predictions_only_when_a_sample_confirms_them(
    mlflow_backend, monkeypatch, tampered
):
    from alloy_mtl.evaluation.robustness import stack_conditions
    from alloy_mtl.tracking import paired_gate

    client, experiment = mlflow_backend["client"], mlflow_backend["experiment_id"]
    bundles = [make_bundle(seed=seed) for seed in (1, 2)]
    conditions = {"unseen_detector_1": images_of(100, 1), "kv_x1.02": images_of(100, 2)}
    run_predictions = stack_conditions(
        {name: predict_images(bundles[1], *pair) for name, pair in conditions.items()}
    )
    if tampered:  # predictions that are not the registered model's: must not be used
        run_predictions["prob_1050"] = 1.0 - run_predictions["prob_1050"]
    predicted_rows = []

    def counting(bundle, images, metadata, **kwargs):
        predicted_rows.append(len(images))
        return predict_images(bundle, images, metadata, **kwargs)

    monkeypatch.setattr(paired_gate, "predict_images", counting)
    results = {}
    for reuse in (True, False):
        settings = GateSettings(
            model_name=f"alloy_mtl_reuse_{next(_names)}", metric="test.classification.macro_ap"
        )
        predicted_rows.clear()
        decision, _ = _two_versions(
            client,
            experiment,
            settings,
            bundles,
            lambda child, reuse=reuse, name=settings.model_name: comparer(
                name,
                lambda: conditions,
                None,
                n_resamples=200,
                seed=0,
                level=0.95,
                known={child: run_predictions} if reuse else None,
            ),
        )
        results[reuse] = (decision, sum(predicted_rows))
    (reused, reused_rows), (fresh, fresh_rows) = results[True], results[False]
    assert fresh_rows == 400  # both versions predict both conditions' 100 images
    # the champion predicts every image; the challenger a sample of each condition; tampered: the first sample
    # disagrees, and the challenger predicts every image
    sample = paired_gate.REUSE_CHECK_ROWS
    assert reused_rows == (200 + sample + 200 if tampered else 200 + 2 * sample)
    for key in ("challenger_score", "champion_score", "difference_ci_low", "decision"):
        assert reused[key] == fresh[key]


def test_sample_rows_cover_a_condition_evenly():
    from alloy_mtl.tracking.paired_gate import sample_rows

    assert list(sample_rows(5, 32)) == [0, 1, 2, 3, 4]
    rows = sample_rows(1000, 32)
    assert len(rows) == 32 and rows[0] == 0 and rows[-1] == 999
    assert sample_rows(0).size == 0
