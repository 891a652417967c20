"""Shared fixtures: synthetic predictions tables and training histories in the evaluation contracts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.constants import ALLOYS
from tests.evaluation.helpers import predictions_from_probs

PredictionFactory = Callable[..., pd.DataFrame]


@pytest.fixture
def make_predictions() -> PredictionFactory:
    """Factory of a noisy, long-tailed predictions table with thickness and absorption columns."""

    def make(n: int = 120, seed: int = 0, regression: bool = True) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        y = rng.choice(len(ALLOYS), size=n, p=[0.4, 0.25, 0.15, 0.12, 0.08])
        y[: len(ALLOYS)] = np.arange(len(ALLOYS))
        logits = rng.normal(size=(n, len(ALLOYS)))
        logits[np.arange(n), y] += 1.5
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        frame = predictions_from_probs(probs, y)
        if regression:
            thickness = rng.uniform(1.0, 10.0, n)
            frame["thickness_mm_true"] = thickness
            frame["thickness_mm_pred"] = thickness + rng.normal(0.0, 0.4, n)
            absorption = rng.uniform(0.5, 3.0, n)
            frame["absorption_true"] = absorption
            frame["absorption_pred"] = absorption + rng.normal(0.0, 0.1, n)
            frame.loc[[3, 7], "thickness_mm_true"] = np.nan
        return frame

    return make


@pytest.fixture
def history() -> pd.DataFrame:
    """Six epochs of a two-task training history with gradient diagnostics."""
    epochs = np.arange(1, 7)
    return pd.DataFrame(
        {
            "epoch": epochs,
            "lr": 1e-3,
            "epoch_time_s": [2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            "train_loss": 2.0 / epochs,
            "val_loss": [2.0, 1.5, 1.2, 1.1, 1.15, 1.3],
            "train_alloy_loss": 1.0 / epochs,
            "val_alloy_loss": 1.2 / epochs,
            "train_thickness_loss": 1.0 / epochs,
            "val_thickness_loss": 0.8 / epochs,
            "train_alloy_acc": np.linspace(0.4, 0.95, 6),
            "val_alloy_acc": np.linspace(0.35, 0.85, 6),
            "val_thickness_mae": np.linspace(2.0, 0.5, 6),
            "weight_alloy": 1.0,
            "weight_thickness": 1.0,
            "grad_cos_alloy__thickness": np.linspace(-0.4, 0.3, 6),
            "conflict_share": np.linspace(0.7, 0.2, 6),
        }
    )


@pytest.fixture
def train_labels() -> dict[str, np.ndarray]:
    """Training-split labels: alloys with a long tail, thickness and absorption targets."""
    rng = np.random.default_rng(1)
    counts = {"1050": 300, "2017": 120, "5083": 60, "6082": 25, "7075": 10}
    alloys = np.concatenate([np.full(count, alloy) for alloy, count in counts.items()])
    return {
        "alloy": alloys,
        "thickness": rng.uniform(1.0, 10.0, alloys.size),
        "absorption": rng.uniform(0.5, 3.0, alloys.size),
    }
