"""Score trained models, their ensembles and the physics limit on a lab's labelled folder.

The folder is read by the same ingest as training on lab data (``csv_folder`` or ``class_per_folder``), and
the models see it through the same preprocessing as every evaluation. One row per model: macro AP and accuracy
with specimen-bootstrap intervals, mean confidence and the AP of each alloy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from alloy_mtl.config import ParamsModel
from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.params import IngestOptions
from alloy_mtl.evaluation.classification import classification_metrics
from alloy_mtl.evaluation.robustness import condition_metrics, interval_cell

__all__ = [
    "EXTERNAL",
    "ExternalParams",
    "external_conformal_markdown",
    "external_markdown",
    "external_table",
    "instrument_at_bounds",
]

EXTERNAL = "external"
"""The one condition of the external folder (the robustness machinery scores conditions)."""


class ExternalParams(ParamsModel):
    """``external``: the lab's labelled folder that ``evaluate_external`` scores every model on."""

    path: str | None = None
    """The labelled folder (required to run the pipeline)."""
    layout: Literal["csv_folder", "class_per_folder"] = "csv_folder"
    """How the folder is laid out (see the data guide's lab-folder layouts)."""
    options: IngestOptions = IngestOptions()
    """How it is read (bit_depth, alloy_names, on_bad_file, ...)."""
    n_resamples: int = Field(1000, ge=0)
    """Specimen-bootstrap resamples of the intervals (0: none)."""
    conformal_folds: int = Field(5, ge=2)
    """Specimen folds of the conformal check (``conformal.md``): each image is covered by sets refitted on the
    folder's other folds, beside the model's own sets, so a lab sees what refitting on its unit
    (``inference.unit_conformal``) would do for every model."""


def external_table(
    predictions: Mapping[str, pd.DataFrame], *, n_resamples: int, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """One row per model: ``model``, ``n_images``, ``n_specimens``, ``macro_ap`` (+ interval), ``accuracy``
    (+ interval), ``mean_confidence`` and ``ap_<alloy>`` per alloy."""
    rows = []
    for model, frame in predictions.items():
        row: dict[str, Any] = {"model": model}
        row |= condition_metrics(frame, n_resamples=n_resamples, seed=seed, level=level)
        per_alloy = classification_metrics(frame, ALLOYS)["ap"]
        row |= {f"ap_{alloy}": per_alloy.get(alloy) for alloy in ALLOYS}
        rows.append(row)
    return pd.DataFrame(rows)


def instrument_at_bounds(
    instrument: Mapping[str, float], tolerances: Sequence[tuple[str, float, float]], share: float = 0.01
) -> list[str]:
    """The settings of the folder's fitted ``instrument`` on an edge of their declared tolerance (within ``share``
    of the range): the folder's instrument is probably outside the specification the models were trained for."""
    edges = []
    for key, low, high in tolerances:
        if key in instrument and high > low:
            margin = share * (high - low)
            value = float(instrument[key])
            if value <= low + margin or value >= high - margin:
                edges.append(f"{key} = {value:.4g} (tolerance [{low:.4g}, {high:.4g}])")
    return edges


def external_markdown(
    table: pd.DataFrame,
    source: str,
    instrument: Mapping[str, float],
    level: float,
    at_bounds: Sequence[str] = (),
) -> str:
    """The comparison as Markdown, with the folder, the instrument the models and physics limit were told, and a
    warning when that instrument sits on an edge of the declared tolerances (``at_bounds``)."""
    alloys = " | ".join(ALLOYS)
    lines = [
        "# External evaluation",
        "",
        f"Labelled folder `{source}`; {int(table['n_images'].max()) if len(table) else 0} images. Intervals: "
        f"{level:.0%} specimen bootstrap. Instrument-conditioned models and the physics limit were told the "
        "instrument " + ", ".join(f"{k} {v:.4g}" for k, v in instrument.items()) + ".",
        "",
        f"| model | macro AP | accuracy | mean confidence | {alloys} |",
        "|---|---|---|---|" + "---|" * len(ALLOYS),
    ]
    if at_bounds:
        lines[3:3] = [
            "",
            "**Warning: the folder's instrument is at the edge of the declared tolerances** ("
            + "; ".join(at_bounds)
            + "): it is probably outside the specification the models were trained for, and every score below "
            "is pessimistic. Calibrate: `kedro run --pipeline calibrate_instrument --params "
            "calibration.path=<calibration folder>`, then train again.",
        ]
    for _, row in table.iterrows():
        per_alloy = " | ".join(
            "n/a" if row[f"ap_{a}"] is None or not np.isfinite(row[f"ap_{a}"]) else f"{row[f'ap_{a}']:.3f}"
            for a in ALLOYS
        )
        lines.append(
            f"| {row['model']} | {interval_cell(row, 'macro_ap')} | {interval_cell(row, 'accuracy')} | "
            f"{row['mean_confidence']:.3f} | {per_alloy} |"
        )
    return "\n".join(lines) + "\n"


def external_conformal_markdown(records: Mapping[str, Mapping[str, Any]], source: str) -> str:
    """Per model, each alloy's and interval's coverage on the folder with the model's own sets and with sets
    refitted on the folder (cross-fitted over specimen folds): ``records`` are
    :func:`alloy_mtl.evaluation.unit_conformal.refit_record` per model (empty: no sets or no labels)."""
    lines = ["# Conformal sets on the external folder", ""]
    measured = {name: r for name, r in records.items() if r}
    if not measured:
        return "\n".join([*lines, "No model with fitted conformal sets was scored.", ""])
    first = next(iter(measured.values()))
    check = first["check"]
    counts = ", ".join(f"{alloy} {n}" for alloy, n in first["class_counts"].items())
    targets = list(check["intervals"])
    lines += [
        f"Labelled folder `{source}` ({counts} images, {check['specimens']} specimens), target "
        f"{first['coverage']:.0%} per alloy. **own**: the sets the model carries (fitted on generated images), "
        f"measured on every image; **refit**: sets refitted on this folder, each image covered by sets fitted "
        f"on the other {check['folds']} - 1 specimen folds (what `inference.unit_conformal.calibration` set to this "
        "folder would give on new images of the same unit). One alloy's coverage on n specimens spreads by about "
        "sqrt(0.09 / n).",
        "",
        "| model | sets | " + " | ".join([*ALLOYS, *targets]) + " | mean set size |",
        "|---|---|" + "---|" * (len(ALLOYS) + len(targets) + 1),
    ]
    for name, record in measured.items():
        per_class, intervals = record["check"]["per_class"], record["check"]["intervals"]
        for which, label in (("shipped", "own"), ("refit", "refit")):
            cells = [
                f"{per_class[a][f'{which}_coverage']:.3f}" if a in per_class else "n/a" for a in ALLOYS
            ] + [f"{intervals[t][f'{which}_coverage']:.3f}" for t in targets]
            sizes = [row[f"{which}_set_size"] * row["n"] for row in per_class.values()]
            size = sum(sizes) / sum(row["n"] for row in per_class.values())
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + f" | {size:.2f} |")
    if first.get("advice"):
        lines += ["", f"**Note:** {first['advice']}."]
    return "\n".join(lines) + "\n"
