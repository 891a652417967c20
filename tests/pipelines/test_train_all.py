"""`train_all` end to end on a tiny generated dataset: every architecture trains and is reported."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from alloy_mtl.datasets import TorchBundleDataset
from alloy_mtl.mtl.experiment import load_model
from alloy_mtl.pipelines.training import ARCHITECTURES

TINY = {
    "generation": {"n_images": 200, "image_size": 32, "min_images_per_class": 18, "images_per_specimen": 3},
    "training": {"epochs": 1, "batch_size": 16, "max_train_images": 48, "progress_bar": False},
}


@pytest.mark.slow
def test_train_all_produces_models_histories_reports_and_comparison(kedro_project, run_pipeline):
    run_pipeline(kedro_project, "train_all", TINY)

    data = kedro_project / "data"
    for arch in ARCHITECTURES:
        bundle = TorchBundleDataset(str(data / f"06_models/{arch}/model.pt")).load()
        model = load_model(bundle)
        outputs = model(torch.zeros(2, 3, 32, 32))
        assert outputs["alloy"].shape == (2, 5)
        history = pd.read_csv(data / f"07_model_output/{arch}/history.csv")
        assert {"train_alloy_loss", "val_alloy_loss", "train_alloy_acc", "val_alloy_acc"} <= set(
            history.columns
        )
        metrics = json.loads((data / f"08_reporting/{arch}/metrics.json").read_text())
        assert set(metrics["classification"]["ap"]) == {"1050", "2017", "5083", "6082", "7075"}
        for figure in ("pr_curves", "roc_curves", "confusion_matrix", "loss_curves", "scatter_thickness"):
            assert (data / f"08_reporting/{arch}/{figure}.png").stat().st_size > 1000

    table = pd.read_csv(data / "08_reporting/comparison.csv")
    assert set(ARCHITECTURES) | {"ensemble_soft", "ensemble_hard", "physics_limit"} == set(table["model"])
    assert (data / "08_reporting/comparison.md").read_text().count("resnet18") >= 2
    assert (data / "08_reporting/ap_heatmap.png").stat().st_size > 1000
