"""Cross-model comparison: the study's AP-by-alloy and training tables from each model's metrics.json.

Each model's dict has the layout written by :func:`alloy_mtl.evaluation.report.evaluate_model`:
``classification`` (``ap``, ``macro_ap``, ``accuracy``, ...), ``regression`` (per task ``overall.r2``),
``training`` (``final_train_acc``, ``final_val_acc``, ``final_train_loss``, ``final_val_loss``,
``mean_epoch_time_s``, ``epochs_trained``) and ``model`` (``n_params``). Missing entries become NaN, so
the physics-limit estimator (no training, no parameters) sits in the same table as the networks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS

logger = logging.getLogger(__name__)

TRAINING_COLUMNS: tuple[str, ...] = ("final_train_acc", "final_val_acc", "final_train_loss", "final_val_loss")
INTEGER_COLUMNS: frozenset[str] = frozenset({"n_params", "epochs_trained"})
MISSING_TEXT = "n/a"


def _get(metrics: Mapping[str, Any], *path: str) -> float:
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return np.nan
        value = value[key]
    return np.nan if value is None else float(value)


def _interval(metrics: Mapping[str, Any], *path: str) -> tuple[float, float]:
    value: Any = metrics.get("ci95") or {}
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return (float(value[0]), float(value[1])) if isinstance(value, (list, tuple)) else (np.nan, np.nan)


def _row(
    metrics: Mapping[str, Any], alloys: Sequence[str], tail_classes: Sequence[str] | None, tasks: list[str]
) -> dict[str, float]:
    row = {f"ap_{alloy}": _get(metrics, "classification", "ap", alloy) for alloy in alloys}
    row["macro_ap"] = _get(metrics, "classification", "macro_ap")
    if tail_classes is not None:
        tail = [row[f"ap_{alloy}"] for alloy in tail_classes]
        row["tail_ap"] = float(np.nanmean(tail)) if np.isfinite(tail).any() else np.nan
    row["accuracy"] = _get(metrics, "classification", "accuracy")
    row["balanced_accuracy"] = _get(metrics, "classification", "balanced_accuracy")
    for column in TRAINING_COLUMNS:
        row[column] = _get(metrics, "training", column)
    for task in tasks:
        row[f"r2_{task}"] = _get(metrics, "regression", task, "overall", "r2")
    for metric in ("macro_ap", "balanced_accuracy"):
        interval = _interval(metrics, "classification", metric)
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = interval
    for task in tasks:
        row[f"r2_{task}_ci_low"], row[f"r2_{task}_ci_high"] = _interval(metrics, "regression", task, "r2")
    row["epoch_time_s"] = _get(metrics, "training", "mean_epoch_time_s")
    row["epochs_trained"] = _get(metrics, "training", "epochs_trained")
    row["n_params"] = _get(metrics, "model", "n_params")
    return row


def comparison_table(
    per_model: Mapping[str, Mapping[str, Any]],
    alloys: Sequence[str] = ALLOYS,
    tail_classes: Sequence[str] | None = None,
    reference: str | None = None,
) -> pd.DataFrame:
    """One row per model (index ``model``, in the given order) comparing metrics across architectures.

    Columns: ``ap_<alloy>`` per alloy, ``macro_ap``, ``tail_ap`` (mean AP over ``tail_classes``, when
    given; alloys with undefined AP are left out of the mean), test ``accuracy`` and
    ``balanced_accuracy``, ``final_train_acc``, ``final_val_acc``, ``final_train_loss``,
    ``final_val_loss``, ``r2_<task>`` for every regression task any model has, ``epoch_time_s`` (mean),
    ``epochs_trained``, ``n_params`` and, when ``reference`` names a row (the physics-limit estimator),
    ``gap_to_physics_accuracy`` and ``gap_to_physics_macro_ap`` = reference value minus the model's
    (positive: the model is below the physics limit; 0 on the reference row).
    """
    if not per_model:
        raise ValueError("comparison_table: per_model is empty; expected {model name: metrics dict}")
    for name, metrics in per_model.items():
        if not isinstance(metrics, Mapping) or not isinstance(metrics.get("classification"), Mapping):
            raise ValueError(f"comparison_table: model {name!r} has no 'classification' metrics section")
    unknown = sorted(set(tail_classes or ()) - set(alloys))
    if unknown:
        raise ValueError(f"comparison_table: tail_classes {unknown} are not among {list(alloys)}")
    if reference is not None and reference not in per_model:
        raise ValueError(f"comparison_table: reference row {reference!r} not among models {list(per_model)}")
    tasks: list[str] = []
    for metrics in per_model.values():
        for task in metrics.get("regression") or {}:
            if task not in tasks:
                tasks.append(task)
    table = pd.DataFrame.from_dict(
        {name: _row(metrics, alloys, tail_classes, tasks) for name, metrics in per_model.items()},
        orient="index",
    )
    table.index.name = "model"
    if reference is not None:
        for metric in ("accuracy", "macro_ap"):
            table[f"gap_to_physics_{metric}"] = table.loc[reference, metric] - table[metric]
    return table


def ap_by_alloy_table(table: pd.DataFrame, alloys: Sequence[str] = ALLOYS) -> pd.DataFrame:
    """The study's first table from :func:`comparison_table`: AP per alloy and macro AP, columns named by alloy."""
    columns = {f"ap_{alloy}": alloy for alloy in alloys} | {"macro_ap": "macro"}
    return table[list(columns)].rename(columns=columns)


def headline_table(table: pd.DataFrame, tasks: Sequence[str] = ()) -> pd.DataFrame:
    """Macro AP, tail AP, balanced accuracy and R2 per task, each as ``value [low, high]`` (95% interval)."""

    def cell(row: pd.Series, metric: str) -> str:
        value = row.get(metric, np.nan)
        if not np.isfinite(value):
            return MISSING_TEXT
        low, high = row.get(f"{metric}_ci_low", np.nan), row.get(f"{metric}_ci_high", np.nan)
        return f"{value:.3f} [{low:.3f}, {high:.3f}]" if np.isfinite(low) else f"{value:.3f}"

    metrics = ["macro_ap", "tail_ap", "balanced_accuracy", *(f"r2_{task}" for task in tasks)]
    metrics = [m for m in metrics if m in table.columns]
    out = pd.DataFrame({m: [cell(row, m) for _, row in table.iterrows()] for m in metrics}, index=table.index)
    return out


def training_summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """The study's second table from :func:`comparison_table`: final train/val accuracy and loss."""
    return table[list(TRAINING_COLUMNS)]


def _cell(value: Any, column: str, floatfmt: str) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return MISSING_TEXT
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{int(value):d}" if column in INTEGER_COLUMNS else format(float(value), floatfmt)
    return str(value)


def _plain_markdown(header: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    widths = [max(len(header[i]), 3, *(len(row[i]) for row in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if num else "-" * (w + 2) for w, num in zip(widths, numeric, strict=True)
    )
    return "\n".join([line(header), rule + "|", *(line(row) for row in rows)])


def to_markdown(table: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A markdown (pipe) table of ``table`` with its index as first column; NaN shows as ``n/a``.

    Cells are formatted here (floats with ``floatfmt``, counts as integers); the layout is pandas'
    ``DataFrame.to_markdown`` when the optional ``tabulate`` package is importable, otherwise a small
    built-in formatter producing the same cells.
    """
    index_name = table.index.name or ""
    header = [index_name, *[str(c) for c in table.columns]]
    rows = [
        [str(index), *[_cell(value, str(column), floatfmt) for column, value in row.items()]]
        for index, row in table.iterrows()
    ]
    numeric = [False, *[pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]]
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return _plain_markdown(header, rows, numeric)
    text_table = pd.DataFrame(rows, columns=header).set_index(header[0])
    align = ["left", *["right" if num else "left" for num in numeric[1:]]]
    return text_table.to_markdown(disable_numparse=True, colalign=align)
