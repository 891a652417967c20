"""Evaluation figures. Every function returns a matplotlib Figure; the caller saves it.

Figures are built with ``matplotlib.figure.Figure`` directly, not through pyplot: they render with the
Agg canvas whatever backend is active, never open a window and are not kept in pyplot's figure registry
(``plt.close(fig)`` is harmless; dropping the last reference frees them).

Numbers printed on figures (AP, AUC, R2, ECE) are taken from the metrics dicts computed by
:mod:`alloy_mtl.evaluation.classification` and :mod:`alloy_mtl.evaluation.regression`, so a figure
and ``metrics.json`` always show the same value. A function whose input lacks every column it could
draw raises :class:`PlotDataMissing`, which callers catch to skip that figure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.classification import (
    label_indices,
    labelled_rows,
    prob_columns,
    reliability_bins,
)

_GRAD_COS = re.compile(r"^grad_cos_(?P<a>.+)__(?P<b>.+)$")


class PlotDataMissing(ValueError):
    """The input lacks the columns or values a figure needs (the figure is skipped, not an error)."""


def format_metric(value: float | None) -> str:
    """A metric as printed on figures: three decimals, ``n/a`` when undefined."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _one_vs_rest(pred_df: pd.DataFrame, alloys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    rows = labelled_rows(pred_df)
    return label_indices(rows["alloy_true"], alloys), rows[prob_columns(alloys)].to_numpy(dtype=float)


def pr_curves(
    pred_df: pd.DataFrame, metrics: Mapping[str, Any], alloys: Sequence[str] = ALLOYS, title: str = ""
) -> Figure:
    """One-vs-rest precision-recall curves, legend ``"<alloy> (AP=0.912)"`` with AP from ``metrics["ap"]``.

    ``metrics`` is the dict of :func:`classification_metrics` for the same predictions. Curves are drawn
    as steps (the interpolation average precision uses); alloys absent from the test set get a legend
    entry ``AP=n/a`` and no curve.
    """
    y_true, probs = _one_vs_rest(pred_df, alloys)
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for index, alloy in enumerate(alloys):
        label = f"{alloy} (AP={format_metric(metrics['ap'].get(alloy))})"
        positives = y_true == index
        if not positives.any():
            ax.plot([], [], label=label)
            continue
        precision, recall, _ = precision_recall_curve(positives, probs[:, index])
        ax.step(recall, precision, where="post", label=label)
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"{title} precision-recall (macro AP={format_metric(metrics.get('macro_ap'))})".strip())
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def roc_curves(
    pred_df: pd.DataFrame, metrics: Mapping[str, Any], alloys: Sequence[str] = ALLOYS, title: str = ""
) -> Figure:
    """One-vs-rest ROC curves, legend ``"<alloy> (AUC=0.950)"`` with AUC from ``metrics["roc_auc"]``."""
    y_true, probs = _one_vs_rest(pred_df, alloys)
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for index, alloy in enumerate(alloys):
        label = f"{alloy} (AUC={format_metric(metrics['roc_auc'].get(alloy))})"
        positives = y_true == index
        if not positives.any() or positives.all():
            ax.plot([], [], label=label)
            continue
        fpr, tpr, _ = roc_curve(positives, probs[:, index])
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"{title} ROC (macro AUC={format_metric(metrics.get('macro_roc_auc'))})".strip())
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def confusion_matrix_figure(
    metrics: Mapping[str, Any], alloys: Sequence[str] = ALLOYS, normalized: bool = False, title: str = ""
) -> Figure:
    """Confusion matrix heatmap (rows true, columns predicted) with annotated cells and alloy tick labels.

    Raw counts from ``metrics["confusion_matrix"]``, or row-normalized values (two decimals) from
    ``metrics["confusion_matrix_normalized"]`` when ``normalized``.
    """
    key = "confusion_matrix_normalized" if normalized else "confusion_matrix"
    matrix = np.array(
        [[np.nan if value is None else value for value in row] for row in metrics[key]], dtype=float
    )
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalized else max(np.nanmax(matrix), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = np.nanmax(matrix) / 2 if np.isfinite(matrix).any() else 0
    for (row, col), value in np.ndenumerate(matrix):
        text = "n/a" if not np.isfinite(value) else (f"{value:.2f}" if normalized else f"{int(value)}")
        color = "white" if np.isfinite(value) and value > threshold else "black"
        ax.text(col, row, text, ha="center", va="center", color=color, fontsize=9)
    ticks = np.arange(len(alloys))
    ax.set_xticks(ticks, labels=list(alloys))
    ax.set_yticks(ticks, labels=list(alloys))
    ax.set(xlabel="Predicted alloy", ylabel="True alloy")
    ax.set_title(f"{title} confusion matrix{' (normalized by true row)' if normalized else ''}".strip())
    fig.tight_layout()
    return fig


def _curve_panels(history: pd.DataFrame, panels: list[tuple[str, list[str], str]], title: str) -> Figure:
    if "epoch" not in history.columns:
        raise PlotDataMissing("history: column 'epoch' is missing")
    panels = [
        (name, [c for c in columns if c in history.columns and history[c].notna().any()], ylabel)
        for name, columns, ylabel in panels
    ]
    panels = [panel for panel in panels if panel[1]]
    if not panels:
        raise PlotDataMissing(f"history: no column to draw {title}")
    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, columns, ylabel) in zip(axes[0], panels, strict=True):
        for column in columns:
            split = column.split("_", 1)[0]
            ax.plot(
                history["epoch"],
                history[column],
                marker=".",
                label=split if split in {"train", "val"} else column,
            )
        ax.set(title=name, xlabel="Epoch", ylabel=ylabel)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def history_tasks(history: pd.DataFrame, suffix: str) -> list[str]:
    """Task names having a ``train_<task>_<suffix>`` or ``val_<task>_<suffix>`` column, in column order."""
    pattern = re.compile(rf"^(?:train|val)_(?P<task>.+)_{re.escape(suffix)}$")
    tasks: list[str] = []
    for column in history.columns:
        match = pattern.match(str(column))
        if match and match["task"] not in tasks:
            tasks.append(match["task"])
    return tasks


def loss_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Train vs validation loss per epoch: the total loss and one panel per task."""
    panels = [("total", ["train_loss", "val_loss"], "Loss")]
    panels += [
        (task, [f"train_{task}_loss", f"val_{task}_loss"], "Loss") for task in history_tasks(history, "loss")
    ]
    return _curve_panels(history, panels, f"{title} loss".strip())


def accuracy_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Train vs validation accuracy per classification task, and validation MAE per regression task."""
    panels = [
        (f"{task} accuracy", [f"train_{task}_acc", f"val_{task}_acc"], "Accuracy")
        for task in history_tasks(history, "acc")
    ]
    panels += [
        (f"{task} MAE", [f"train_{task}_mae", f"val_{task}_mae"], "MAE")
        for task in history_tasks(history, "mae")
    ]
    return _curve_panels(history, panels, f"{title} accuracy".strip())


def scatter_pred_true(
    y_true: np.ndarray | Sequence[float],
    y_pred: np.ndarray | Sequence[float],
    task: str,
    r2: float | None,
    unit: str = "",
) -> Figure:
    """Predicted vs true values of one regression task with the y = x line; ``r2`` (from the metrics) in the title.

    Samples with a missing true value are not drawn.
    """
    true = np.asarray(y_true, dtype=float)
    pred = np.asarray(y_pred, dtype=float)
    keep = np.isfinite(true) & np.isfinite(pred)
    if not keep.any():
        raise PlotDataMissing(f"{task}: no sample with both a true and a predicted value")
    true, pred = true[keep], pred[keep]
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(true, pred, s=12, alpha=0.6)
    low, high = min(true.min(), pred.min()), max(true.max(), pred.max())
    ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1, label="y = x")
    suffix = f" ({unit})" if unit else ""
    ax.set(xlabel=f"True {task}{suffix}", ylabel=f"Predicted {task}{suffix}")
    ax.set_title(f"{task}: R2={format_metric(r2)} (n={true.size})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def reliability_diagram(
    pred_df: pd.DataFrame,
    alloys: Sequence[str] = ALLOYS,
    n_bins: int = 15,
    ece: float | None = None,
    title: str = "",
) -> Figure:
    """Top-label reliability diagram: accuracy per confidence bin against the diagonal, ECE in the title."""
    y_true, probs = _one_vs_rest(pred_df, alloys)
    stats = reliability_bins(probs, y_true, n_bins)
    edges = stats["edges"]
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    filled = stats["count"] > 0
    fig = Figure(figsize=(5, 6))
    (ax, ax_count) = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(
        centers[filled], stats["accuracy"][filled], width=width[filled], edgecolor="black", label="accuracy"
    )
    gap_low = np.minimum(stats["accuracy"], stats["confidence"])[filled]
    gap = np.abs(stats["confidence"] - stats["accuracy"])[filled]
    ax.bar(
        centers[filled],
        gap,
        bottom=gap_low,
        width=width[filled],
        color="red",
        alpha=0.3,
        label="|confidence - accuracy|",
    )
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1)
    ax.set(ylabel="Accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"{title} reliability (ECE={format_metric(ece)})".strip())
    ax.legend(loc="upper left")
    ax_count.bar(centers, stats["count"], width=width, color="grey")
    ax_count.set(xlabel="Confidence (top label)", ylabel="Count")
    fig.tight_layout()
    return fig


def gradient_conflict(history: pd.DataFrame, title: str = "") -> Figure:
    """Per-epoch gradient cosine similarity of each task pair and, when logged, the conflict share."""
    if "epoch" not in history.columns:
        raise PlotDataMissing("history: column 'epoch' is missing")
    pairs = [c for c in history.columns if _GRAD_COS.match(str(c)) and history[c].notna().any()]
    has_share = "conflict_share" in history.columns and history["conflict_share"].notna().any()
    if not pairs and not has_share:
        raise PlotDataMissing("history: no grad_cos_<a>__<b> or conflict_share column with values")
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for column in pairs:
        match = _GRAD_COS.match(str(column))
        ax.plot(history["epoch"], history[column], marker=".", label=f"cos({match['a']}, {match['b']})")
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set(xlabel="Epoch", ylabel="Gradient cosine similarity", ylim=(-1.05, 1.05))
    handles, labels = ax.get_legend_handles_labels()
    if has_share:
        share_ax = ax.twinx()
        (line,) = share_ax.plot(
            history["epoch"], history["conflict_share"], color="red", linestyle="--", label="conflict share"
        )
        share_ax.set(ylabel="Conflict share", ylim=(0, 1))
        handles, labels = handles + [line], labels + ["conflict share"]
    ax.legend(handles, labels, loc="lower left")
    ax.set_title(f"{title} gradient conflict".strip())
    fig.tight_layout()
    return fig


def ap_heatmap(ap_table: pd.DataFrame, title: str = "Average precision by alloy") -> Figure:
    """Heatmap of an AP table (rows models, columns alloys and macro) with annotated cells; NaN shows ``n/a``."""
    if ap_table.empty:
        raise PlotDataMissing("AP table has no rows")
    values = ap_table.to_numpy(dtype=float)
    fig = Figure(figsize=(1.1 * values.shape[1] + 2.5, 0.5 * values.shape[0] + 1.8))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for (row, col), value in np.ndenumerate(values):
        color = "black" if np.isfinite(value) and value > 0.6 else "white"
        ax.text(col, row, format_metric(value), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(np.arange(values.shape[1]), labels=[str(c) for c in ap_table.columns])
    ax.set_yticks(np.arange(values.shape[0]), labels=[str(i) for i in ap_table.index])
    ax.set_title(title)
    fig.tight_layout()
    return fig
