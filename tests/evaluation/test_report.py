"""evaluate_model: metrics.json content, training summary from the history, and the named figures."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.report import evaluate_model

ALL_FIGURES = {
    "pr_curves",
    "roc_curves",
    "confusion_matrix",
    "confusion_matrix_normalized",
    "loss_curves",
    "accuracy_curves",
    "scatter_thickness",
    "scatter_absorption",
    "reliability",
    "gradient_conflict",
}


def _close(figures: dict) -> None:
    for fig in figures.values():
        plt.close(fig)


def test_full_evaluation(make_predictions, history, train_labels, tmp_path) -> None:
    frame = make_predictions(n=120)
    metrics, figures = evaluate_model(
        frame, history, train_labels, {"model_name": "resnet18", "n_params": 42}
    )

    json.dumps(metrics, allow_nan=False)
    assert set(figures) == ALL_FIGURES
    assert metrics["model"] == {"name": "resnet18", "n_params": 42}
    training = metrics["training"]
    assert training["final_train_loss"] == pytest.approx(2.0 / 6)
    assert training["final_val_loss"] == 1.3
    assert training["final_val_acc"] == pytest.approx(0.85)
    assert training["final_train_acc"] == pytest.approx(0.95)
    assert training["epochs_trained"] == 6
    assert training["mean_epoch_time_s"] == pytest.approx(7 / 6)
    assert (training["best_epoch"], training["best_val_loss"]) == (4, 1.1)

    assert set(metrics["regression"]) == {"thickness", "absorption"}
    assert metrics["regression"]["thickness"]["overall"]["n"] == 118  # two thickness labels missing
    assert metrics["regression"]["thickness"]["target"] == "thickness_mm"
    # 300/120/60/25/10 training images: many, many, medium, medium, few.
    groups = metrics["classification"]["shot_groups"]
    assert (groups["many"]["alloys"], groups["few"]["alloys"]) == (["1050", "2017"], ["7075"])

    legend = [t.get_text() for t in figures["pr_curves"].axes[0].get_legend().get_texts()]
    assert legend == [f"{a} (AP={metrics['classification']['ap'][a]:.3f})" for a in ALLOYS]
    r2 = metrics["regression"]["absorption"]["overall"]["r2"]
    assert f"R2={r2:.3f}" in figures["scatter_absorption"].axes[0].get_title()

    for name in ("pr_curves", "gradient_conflict"):
        figures[name].savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1024
    _close(figures)


def test_single_task_model_without_diagnostics(make_predictions, history, train_labels) -> None:
    frame = make_predictions(n=60, regression=False)
    bare = history[["epoch", "epoch_time_s", "train_loss", "val_loss", "train_alloy_acc", "val_alloy_acc"]]
    metrics, figures = evaluate_model(frame, bare, {"alloy": train_labels["alloy"]}, {})

    assert metrics["regression"] == {}
    assert set(figures) == ALL_FIGURES - {"scatter_thickness", "scatter_absorption", "gradient_conflict"}
    assert metrics["training"]["final_val_acc"] == pytest.approx(0.85)
    _close(figures)


def test_no_history_and_task_specs_from_params(make_predictions, train_labels) -> None:
    frame = make_predictions(n=60)
    params = {
        "tasks": {
            "material": {"kind": "classification", "target": "alloy"},
            "thickness": {"kind": "regression", "target": "thickness_mm"},
        },
        "shot_bins": {"thickness": 3},
        "shot_thresholds": {"many": 200, "few": 100},
    }
    labels = {"alloy": train_labels["alloy"], "thickness_mm": train_labels["thickness"]}
    metrics, figures = evaluate_model(frame, None, labels, params)

    assert set(metrics["regression"]) == {"thickness"}
    assert len(metrics["regression"]["thickness"]["bin_edges"]) == 4
    assert metrics["training"] == {}
    assert "loss_curves" not in figures and "scatter_thickness" in figures
    # 515 training labels in 3 bins of ~172: all medium under many > 200, few < 100.
    assert metrics["regression"]["thickness"]["medium"]["n"] == 58
    _close(figures)


def test_missing_train_targets_for_a_regression_task(make_predictions, history, train_labels) -> None:
    with pytest.raises(
        ValueError, match="no entry 'absorption' or 'absorption'.*regression task 'absorption'"
    ):
        evaluate_model(
            make_predictions(n=30), history, {"alloy": train_labels["alloy"], "thickness": [1.0, 2.0]}, {}
        )
