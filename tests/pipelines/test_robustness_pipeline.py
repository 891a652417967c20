"""The robustness pipeline end to end over tiny trained-model bundles: table, report, figure, MLflow metrics."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from alloy_mtl.datasets import TorchBundleDataset
from alloy_mtl.pipelines.training import ARCHITECTURES
from tests.tracking.conftest import make_bundle

CONDITIONS = {
    "same_detector": {},
    "unseen_detector_1": {"detector_seed": 910_001},
    "perfect_detector": {
        "fixed_pattern_gain_sigma": 0.0,
        "fixed_pattern_offset_sigma": 0.0,
        "dead_pixel_fraction": 0,
    },
    "kv_x1.02": {"kv_scale": 1.02},
}
TINY = {
    "generation": {"n_images": 150, "image_size": 8, "images_per_specimen": 3, "min_images_per_class": 15},
    "evaluation": {"robustness": {"n_images": 30, "n_resamples": 20, "conditions": CONDITIONS}},
}


@pytest.mark.slow
def test_robustness_pipeline_scores_every_model_under_every_condition(kedro_project, run_pipeline):
    data = kedro_project / "data"
    for seed, arch in enumerate(ARCHITECTURES):  # tiny FNNs stand in for the trained architectures
        TorchBundleDataset(str(data / f"06_models/{arch}/model.pt")).save(
            make_bundle(image_size=8, seed=seed)
        )

    run_pipeline(
        kedro_project, "data_processing", TINY
    )  # the model input: the ensemble chooses on its val split
    run_pipeline(kedro_project, "robustness", TINY)

    report = data / "08_reporting/robustness"
    table = pd.read_csv(report / "robustness.csv")
    models = [*ARCHITECTURES, "ensemble_soft", "ensemble_selected", "physics_limit"]
    assert len(table) == len(models) * len(CONDITIONS)
    assert set(zip(table["model"], table["condition"], strict=True)) == {
        (m, c) for m in models for c in CONDITIONS
    }
    assert table["n_images"].nunique() == 1 and table["macro_ap_ci_low"].notna().all()
    physics = table[table["model"] == "physics_limit"].set_index("condition")
    assert physics.loc["same_detector", "macro_ap"] > 0.5  # the estimator reads the alloy; random is ~0.2
    markdown = (report / "robustness.md").read_text()
    assert "# Robustness to the instrument" in markdown
    assert "`kv_x1.02` (in tolerance): kv_scale = 1.02" in markdown  # classed against generation.tolerances
    assert "## Summary over unseen detectors and in-tolerance conditions" in markdown
    assert (report / "robustness_macro_ap.png").stat().st_size > 1000
    selection = json.loads((data / "08_reporting/ensemble_selection.json").read_text())
    assert set(selection["weights"]) == set(ARCHITECTURES) and sum(
        selection["weights"].values()
    ) == pytest.approx(1)
    stacked = pd.read_csv(data / "07_model_output/fnn/robustness_predictions.csv")
    assert list(stacked["condition"].unique()) == list(CONDITIONS)

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("alloy_mtl")
    runs = client.search_runs(
        [experiment.experiment_id], "tags.`alloy_mtl.pipeline` = 'robustness'", max_results=100
    )
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    by_name = {run.info.run_name: run for run in children}
    assert set(models) <= set(by_name)
    fnn = by_name["fnn"].data.metrics
    assert (
        fnn["robustness.kv_x1.02.macro_ap"]
        == table.set_index(["model", "condition"]).loc[("fnn", "kv_x1.02"), "macro_ap"]
    )
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "robustness")}
    assert {
        "robustness/robustness.csv",
        "robustness/robustness.md",
        "robustness/robustness_macro_ap.png",
    } <= artifacts
