"""Cross-model comparison table, its two study tables, gap to the physics limit and markdown output."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.comparison import (
    ap_by_alloy_table,
    comparison_table,
    to_markdown,
    training_summary_table,
)


def _metrics(ap: list[float | None], accuracy: float, *, trained: bool = True, r2: float = 0.9) -> dict:
    defined = [value for value in ap if value is not None]
    metrics = {
        "classification": {
            "ap": dict(zip(ALLOYS, ap, strict=True)),
            "macro_ap": float(np.mean(defined)),
            "accuracy": accuracy,
            "balanced_accuracy": accuracy - 0.05,
        },
        "regression": {},
        "model": {"name": None, "n_params": None},
    }
    if trained:
        metrics["regression"] = {"thickness": {"overall": {"r2": r2}}}
        metrics["training"] = {
            "final_train_acc": accuracy + 0.1,
            "final_val_acc": accuracy + 0.02,
            "final_train_loss": 0.3,
            "final_val_loss": 0.5,
            "mean_epoch_time_s": 12.5,
            "epochs_trained": 20,
        }
        metrics["model"]["n_params"] = 11_689_512
    return metrics


PER_MODEL = {
    "resnet18": _metrics([0.9, 0.8, 0.7, 0.6, 0.5], 0.80),
    "fnn": _metrics([0.8, 0.6, 0.5, 0.4, None], 0.60, r2=0.5),
    "vgg16": _metrics([1.0, 0.9, 0.8, 0.7, 0.6], 0.85),
    "physics_limit": _metrics([1.0, 1.0, 0.9, 0.9, 0.8], 0.95, trained=False),
}


def test_one_row_per_model_with_gap_to_physics() -> None:
    table = comparison_table(PER_MODEL, tail_classes=["6082", "7075"], reference="physics_limit")

    assert table.index.tolist() == ["resnet18", "fnn", "vgg16", "physics_limit"]
    assert table.loc["resnet18", "gap_to_physics_accuracy"] == pytest.approx(0.15)
    assert table.loc["vgg16", "gap_to_physics_accuracy"] == pytest.approx(0.10)
    assert table.loc["physics_limit", "gap_to_physics_accuracy"] == 0.0
    assert table.loc["resnet18", "gap_to_physics_macro_ap"] == pytest.approx(0.92 - 0.7)
    assert table.loc["resnet18", "tail_ap"] == pytest.approx(0.55)
    assert table.loc["fnn", "tail_ap"] == pytest.approx(0.4)  # 7075 undefined: left out of the mean
    assert np.isnan(table.loc["fnn", "ap_7075"])
    assert table.loc["fnn", "r2_thickness"] == 0.5
    assert np.isnan(table.loc["physics_limit", "final_val_acc"])
    assert np.isnan(table.loc["physics_limit", "n_params"])
    assert table.loc["vgg16", "epoch_time_s"] == 12.5


def test_the_two_study_tables() -> None:
    table = comparison_table(PER_MODEL)
    ap = ap_by_alloy_table(table)
    assert ap.columns.tolist() == [*ALLOYS, "macro"]
    assert ap.loc["vgg16"].tolist() == pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6, 0.8])
    summary = training_summary_table(table)
    assert summary.columns.tolist() == [
        "final_train_acc",
        "final_val_acc",
        "final_train_loss",
        "final_val_loss",
    ]
    assert summary.loc["resnet18", "final_train_acc"] == pytest.approx(0.9)
    assert "gap_to_physics_accuracy" not in table.columns


def test_bad_comparison_inputs() -> None:
    with pytest.raises(ValueError, match="reference row 'physics'"):
        comparison_table(PER_MODEL, reference="physics")
    with pytest.raises(ValueError, match=r"tail_classes \['9999'\]"):
        comparison_table(PER_MODEL, tail_classes=["9999"])
    with pytest.raises(ValueError, match="model 'broken'"):
        comparison_table({"broken": {"training": {}}})
    with pytest.raises(ValueError, match="empty"):
        comparison_table({})


def _cells(markdown: str) -> list[list[str]]:
    lines = markdown.splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in [lines[0], *lines[2:]]]


def test_markdown_with_and_without_tabulate(monkeypatch) -> None:
    table = comparison_table(PER_MODEL, reference="physics_limit")[["ap_1050", "ap_7075", "n_params"]]
    with_tabulate = to_markdown(table)
    monkeypatch.setitem(sys.modules, "tabulate", None)  # makes `import tabulate` raise ImportError
    plain = to_markdown(table)

    expected = [
        ["model", "ap_1050", "ap_7075", "n_params"],
        ["resnet18", "0.900", "0.500", "11689512"],
        ["fnn", "0.800", "n/a", "11689512"],
        ["vgg16", "1.000", "0.600", "11689512"],
        ["physics_limit", "1.000", "0.800", "n/a"],
    ]
    assert _cells(plain) == expected
    assert _cells(with_tabulate) == expected
    assert plain.splitlines()[1].startswith("|") and "---:" in plain.splitlines()[1]
    assert len({len(line) for line in plain.splitlines()}) == 1  # columns padded to one width
