"""Figures: returned, saved to PNG, and printing the same numbers as the metrics dicts."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation import plots
from alloy_mtl.evaluation.classification import classification_metrics


def _saved_size(fig: Figure, path) -> int:
    fig.savefig(path)
    plt.close(fig)
    return path.stat().st_size


def _legend_texts(fig: Figure) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def test_pr_and_roc_legends_use_the_metrics_values(make_predictions, tmp_path) -> None:
    frame = make_predictions(n=100, seed=2, regression=False)
    metrics = classification_metrics(frame)

    pr = plots.pr_curves(frame, metrics, title="resnet18")
    assert _legend_texts(pr) == [f"{alloy} (AP={metrics['ap'][alloy]:.3f})" for alloy in ALLOYS]
    assert f"macro AP={metrics['macro_ap']:.3f}" in pr.axes[0].get_title()
    # Each step curve ends at recall 1, as a PR curve must.
    assert all(line.get_xdata()[0] == pytest.approx(1.0) for line in pr.axes[0].get_lines())
    roc = plots.roc_curves(frame, metrics)
    assert _legend_texts(roc) == [f"{alloy} (AUC={metrics['roc_auc'][alloy]:.3f})" for alloy in ALLOYS]

    assert _saved_size(pr, tmp_path / "pr.png") > 1024
    assert _saved_size(roc, tmp_path / "roc.png") > 1024


def test_pr_legend_of_an_absent_alloy_says_na(make_predictions) -> None:
    frame = make_predictions(n=60, regression=False)
    frame = frame[frame["alloy_true"] != "7075"]
    fig = plots.pr_curves(frame, classification_metrics(frame))
    assert _legend_texts(fig)[-1] == "7075 (AP=n/a)"
    plt.close(fig)


def test_confusion_matrix_cells_are_annotated(make_predictions, tmp_path) -> None:
    frame = make_predictions(n=80, regression=False)
    metrics = classification_metrics(frame)
    raw = plots.confusion_matrix_figure(metrics)
    texts = [text.get_text() for text in raw.axes[0].texts]
    assert texts == [str(value) for row in metrics["confusion_matrix"] for value in row]
    assert [t.get_text() for t in raw.axes[0].get_xticklabels()] == list(ALLOYS)

    normalized = plots.confusion_matrix_figure(metrics, normalized=True)
    first_row = [text.get_text() for text in normalized.axes[0].texts][: len(ALLOYS)]
    assert first_row == [f"{value:.2f}" for value in metrics["confusion_matrix_normalized"][0]]
    assert _saved_size(raw, tmp_path / "cm.png") > 1024
    assert _saved_size(normalized, tmp_path / "cmn.png") > 1024


def test_history_curves(history, tmp_path) -> None:
    loss = plots.loss_curves(history)
    assert [ax.get_title() for ax in loss.axes] == ["total", "alloy", "thickness"]
    assert [line.get_label() for line in loss.axes[0].get_lines()] == ["train", "val"]
    accuracy = plots.accuracy_curves(history)
    assert [ax.get_title() for ax in accuracy.axes] == ["alloy accuracy", "thickness MAE"]
    np.testing.assert_allclose(accuracy.axes[0].get_lines()[1].get_ydata(), history["val_alloy_acc"])
    conflict = plots.gradient_conflict(history)
    assert _legend_texts(conflict) == ["cos(alloy, thickness)", "conflict share"]
    for name, fig in {"loss": loss, "accuracy": accuracy, "conflict": conflict}.items():
        assert _saved_size(fig, tmp_path / f"{name}.png") > 1024


def test_missing_history_columns_raise_plot_data_missing(history) -> None:
    bare = history[["epoch", "train_loss", "val_loss"]]
    with pytest.raises(plots.PlotDataMissing, match="grad_cos"):
        plots.gradient_conflict(bare)
    with pytest.raises(plots.PlotDataMissing):
        plots.accuracy_curves(bare)
    fig = plots.loss_curves(bare)
    assert len(fig.axes) == 1
    plt.close(fig)


def test_scatter_reliability_and_heatmap(make_predictions, tmp_path) -> None:
    frame = make_predictions(n=50)
    scatter = plots.scatter_pred_true(
        frame["thickness_mm_true"], frame["thickness_mm_pred"], "thickness", 0.9731
    )
    assert scatter.axes[0].get_title() == "thickness: R2=0.973 (n=48)"
    metrics = classification_metrics(frame)
    reliability = plots.reliability_diagram(frame, ece=metrics["ece"])
    assert f"ECE={metrics['ece']:.3f}" in reliability.axes[0].get_title()
    table = pd.DataFrame(
        [[0.9, np.nan, 0.5], [0.8, 0.7, 0.75]], index=["resnet18", "fnn"], columns=["1050", "2017", "macro"]
    )
    heatmap = plots.ap_heatmap(table)
    assert [t.get_text() for t in heatmap.axes[0].texts] == [
        "0.900",
        "n/a",
        "0.500",
        "0.800",
        "0.700",
        "0.750",
    ]
    for name, fig in {"scatter": scatter, "reliability": reliability, "heatmap": heatmap}.items():
        assert _saved_size(fig, tmp_path / f"{name}.png") > 1024
