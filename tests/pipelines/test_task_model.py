"""Tasks are data: a fourth regression task trains, predicts and is evaluated end to end by its spec alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.store import XrayData
from alloy_mtl.pipelines.evaluation.nodes import evaluate_architecture
from alloy_mtl.pipelines.training.nodes import train_architecture

TASKS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "logit_adjusted"},
    "thickness": {"kind": "regression", "target": "thickness_mm"},
    "absorption": {"kind": "regression", "target": "absorption", "enabled": False},
    "density": {"kind": "regression", "target": "density_g_cm3", "loss": "huber"},
}


def _model_input(n_per_split: int = 15) -> XrayData:
    rng = np.random.default_rng(0)
    rows = [
        {
            "image_id": f"{split}-{i}",
            "specimen_id": f"{split}-{i}",
            "alloy": ALLOYS[i % 5],
            "thickness_mm": 1.0 + i % 7,
            "absorption": np.nan,
            "density_g_cm3": 2.6 + 0.05 * (i % 5) + 0.01 * rng.standard_normal(),
            "split": split,
        }
        for split in ("train", "val", "test")
        for i in range(n_per_split)
    ]
    images = rng.random((len(rows), 2, 16, 16)).astype(np.float16)
    return XrayData(images=images, metadata=pd.DataFrame(rows))


def test_a_fourth_regression_task_trains_predicts_and_is_evaluated(tmp_path):
    data = _model_input()
    training = {
        "epochs": 2,
        "batch_size": 8,
        "progress_bar": False,
        "checkpoint_root": str(tmp_path),
        "tasks": TASKS,
        "model_options": {"fnn_pool_size": 4, "fnn_hidden": [16]},
    }
    bundle, history, predictions, summary = train_architecture(
        data, training, {"arch": "fnn", "optimizer": "adam", "lr": 1e-3}, {"kind": "generated"}, {}
    )
    # the simulation has no density: the conformal sets fall back to the validation split, as recorded
    assert summary["conformal"]["fitted_on"] == summary["params"]["conformal_set"] == "validation_split"
    assert list(bundle["tasks"]) == ["alloy", "thickness", "density"]
    assert {"density_g_cm3_true", "density_g_cm3_pred", "val_density_mae"} - {
        *predictions.columns,
        *history.columns,
    } == set()
    assert "absorption_pred" not in predictions
    # predictions are in original units (the model undoes its own standardisation)
    assert 2.0 < predictions["density_g_cm3_pred"].mean() < 3.5

    no_set = pd.DataFrame(columns=["image_id"])
    metrics, figures = evaluate_architecture(predictions, no_set, history, data, summary, {"ece_bins": 5})
    assert set(metrics["regression"]) == {"thickness", "density"}
    assert metrics["regression"]["density"]["target"] == "density_g_cm3"
    assert np.isfinite(metrics["regression"]["density"]["overall"]["mae"])
    assert "scatter_density.png" in figures
    low, high = metrics["ci95"]["regression"]["density"]["r2"]  # resampled by the model input's specimens
    assert low <= metrics["regression"]["density"]["overall"]["r2"] <= high
