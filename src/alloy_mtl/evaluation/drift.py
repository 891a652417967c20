"""The drift alarm: is a batch of radiographs still from the instrument the model was trained and checked for?

Two physical tests per batch (the folder's images in file order, ``batch_size`` at a time):

- **beam** (:mod:`alloy_mtl.physics.beam_drift`): a likelihood-ratio test of the batch against the instrument
  the model was trained for (tube voltage, filtration, scintillator, scatter), alloys marginalised, so a batch
  of one alloy is not drift;
- **detector** (:mod:`alloy_mtl.evaluation.detector_pattern`): does the batch carry the fixed pattern of the
  reference detector (another unit, a replaced panel, a new flat-field do not)?

A generic distribution test on the images (KS on image means, MMD of embeddings) was not used: the alloys'
attenuation differs by a few percent, so a change of alloy mix moves those statistics as much as a 2 % kV change
does, and the models' embeddings are trained to ignore the instrument (domain randomisation), which is what
should be watched here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from alloy_mtl.config import ParamsModel
from alloy_mtl.evaluation.detector_pattern import PatternCheck, PatternReference, pattern_check
from alloy_mtl.physics.beam_drift import DEFAULT_DRIFT_RANGES, BeamDrift, beam_drift, search_range_problems
from alloy_mtl.physics.instrument_fit import FITTED_KEYS
from alloy_mtl.physics.simulator import SimulationConfig

__all__ = ["BatchDrift", "DriftParams", "check_batches", "drift_markdown", "drift_metrics", "drift_table"]


class DriftParams(ParamsModel):
    """``inference.drift``: the drift alarm of the inference pipeline."""

    enabled: bool = True
    """Check every batch of the folder (false: no check, no report)."""
    batch_size: int = Field(200, ge=2)
    """Images per checked batch, in file order (the last batch takes the remainder when it has at least
    ``min_images``, else joins the one before)."""
    min_images: int = Field(50, ge=2)
    """Fewest images a batch is checked with."""
    alpha: float = Field(0.001, gt=0, lt=1)
    """Nominal false-alarm rate of the beam test per batch (its chi-square quantile). The chi-square law assumes
    the estimator's forward model is exact; it is close, not exact: without drift, a batch of one alloy reached a
    statistic of 16.5 (above the 0.01 quantile, 13.3, below the 0.001 one, 18.5), while the drifts the alarm is
    for give thousands (``benchmarks/bench_drift.py``)."""
    reference: str | None = None
    """Folder of PNG/TIFF images from the detector in operation (any specimens, one file per image as inference
    reads them), the detector test's reference. null: the generated evaluation set (the simulated instrument, evaluation
    detector unit)."""
    fail_on_alarm: bool = False
    """End the run with an error on an alarm (after writing the predictions and the report), for scheduled
    runs that must stop a pipeline; false: warn and report."""
    search_ranges: dict[str, tuple[float, float]] = {k: tuple(v) for k, v in DEFAULT_DRIFT_RANGES.items()}
    """Where the beam test looks for the batch's instrument (kv_scale, scatter_fraction_scale: factors;
    al_filter_mm, scintillator_mm: mm)."""

    @field_validator("reference")
    @classmethod
    def _reference_folder(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_dir():
            raise ValueError(f"'{Path(value).expanduser()}' is not a folder of PNG/TIFF images")
        return value

    @field_validator("search_ranges")
    @classmethod
    def _fitted_keys(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        problems = search_range_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value


@dataclass(frozen=True)
class BatchDrift:
    """One checked batch: its files and both tests."""

    index: int
    first_file: str
    last_file: str
    beam: BeamDrift
    detector: PatternCheck

    @property
    def alarm(self) -> bool:
        """Either test fired."""
        return self.beam.alarm or self.detector.alarm

    def reasons(self) -> list[str]:
        """Why the alarm fired, in words a lab acts on."""
        reasons = []
        if self.beam.alarm:
            moved = ", ".join(f"{k} {ref:g} -> {fit:g}" for k, (ref, fit) in self.beam.moved().items())
            reasons.append(f"beam differs from the model's instrument ({moved or 'see statistic'})")
        if self.detector.alarm:
            reasons.append(
                f"detector pattern similarity {self.detector.similarity:.2f} < {self.detector.threshold:.2f}: "
                "another detector unit or flat field than the reference"
            )
        return reasons


def batch_slices(n: int, batch_size: int, min_images: int) -> list[slice]:
    """Consecutive batches of ``batch_size``; a remainder under ``min_images`` joins the batch before (a folder
    under ``min_images`` gives none)."""
    if n < min_images:
        return []
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < min_images:
        starts.pop()
    return [slice(start, starts[i + 1] if i + 1 < len(starts) else n) for i, start in enumerate(starts)]


def check_batches(
    images: np.ndarray,
    files: Sequence[str],
    instrument: SimulationConfig,
    reference: PatternReference,
    params: DriftParams,
) -> list[BatchDrift]:
    """Both tests on every batch of ``images`` (N, C, H, W, as the model takes them; ``files`` their names)."""
    checked = []
    for index, part in enumerate(batch_slices(len(images), params.batch_size, params.min_images)):
        batch = images[part]
        checked.append(
            BatchDrift(
                index=index,
                first_file=files[part.start],
                last_file=files[part.stop - 1],
                beam=beam_drift(batch, instrument, alpha=params.alpha, search_ranges=params.search_ranges),
                detector=pattern_check(reference, batch),
            )
        )
    return checked


DRIFT_COLUMNS: tuple[str, ...] = (
    "batch",
    "first_file",
    "last_file",
    "n_images",
    "alarm",
    "beam_statistic",
    "beam_threshold",
    "beam_alarm",
    *(f"fitted_{key}" for key in FITTED_KEYS),
    "pattern_similarity",
    "pattern_expected",
    "pattern_threshold",
    "pattern_informative",
    "pattern_alarm",
    "reasons",
)


def drift_table(batches: Sequence[BatchDrift]) -> pd.DataFrame:
    """One row per batch (columns ``DRIFT_COLUMNS``, also when there is none): files, both statistics with their
    thresholds, the fitted instrument (NaN for a setting not searched), the alarm and its reasons."""
    rows = []
    for b in batches:
        rows.append(
            {
                "batch": b.index,
                "first_file": b.first_file,
                "last_file": b.last_file,
                "n_images": b.beam.n_images,
                "alarm": b.alarm,
                "beam_statistic": b.beam.statistic,
                "beam_threshold": b.beam.threshold,
                "beam_alarm": b.beam.alarm,
                **{f"fitted_{key}": value for key, value in b.beam.fitted.items()},
                "pattern_similarity": b.detector.similarity,
                "pattern_expected": b.detector.expected,
                "pattern_threshold": b.detector.threshold,
                "pattern_informative": b.detector.informative,
                "pattern_alarm": b.detector.alarm,
                "reasons": "; ".join(b.reasons()),
            }
        )
    return pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))


def drift_metrics(table: pd.DataFrame) -> dict[str, float]:
    """MLflow metrics of a drift table: alarms, the worst statistics and, per batch, both statistics."""
    if table.empty:
        return {"drift.batches": 0.0}
    metrics = {
        "drift.batches": float(len(table)),
        "drift.alarms": float(table["alarm"].sum()),
        "drift.max_beam_statistic": float(table["beam_statistic"].max()),
        "drift.min_pattern_similarity": float(table["pattern_similarity"].min()),
    }
    for row in table.itertuples():
        metrics[f"drift.batch_{row.batch}.beam_statistic"] = float(row.beam_statistic)
        metrics[f"drift.batch_{row.batch}.pattern_similarity"] = float(row.pattern_similarity)
        metrics[f"drift.batch_{row.batch}.alarm"] = float(row.alarm)
    return metrics


def drift_markdown(table: pd.DataFrame, reference: str, params: DriftParams) -> str:
    """The drift report: the verdict first, then one line per batch."""
    lines = ["# Drift alarm", ""]
    if table.empty:
        lines.append(f"No batch checked: the folder has fewer than {params.min_images} predicted images.")
        return "\n".join(lines) + "\n"
    alarms = int(table["alarm"].sum())
    verdict = (
        f"**ALARM in {alarms} of {len(table)} batch(es)**: these images do not come from the instrument the model "
        "was trained for; check the instrument, or recalibrate (`kedro run --pipeline calibrate_instrument`) and "
        "retrain before trusting the predictions."
        if alarms
        else f"No alarm in {len(table)} batch(es)."
    )
    if alarms and table["pattern_alarm"].any() and params.reference is None:
        verdict += (
            " The detector test compared with the simulated evaluation set's detector: with a real detector, set "
            "`inference.drift.reference` to a folder of its images so that it watches your detector instead."
        )
    lines += [
        verdict,
        "",
        f"Beam: likelihood-ratio statistic against the model's instrument, alarm above the chi-square "
        f"{1 - params.alpha:.0%} quantile. Detector: pattern similarity to {reference}, alarm below half its "
        "expected value.",
        "",
        "| batch | files | images | beam statistic (threshold) | fitted kV x, filter mm | pattern similarity "
        "(expected) | alarm |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        kv = getattr(row, "fitted_kv_scale", float("nan"))
        filt = getattr(row, "fitted_al_filter_mm", float("nan"))
        similarity = f"{row.pattern_similarity:.2f} ({row.pattern_expected:.2f})"
        if not row.pattern_informative:
            similarity += ", too few images to tell"
        lines.append(
            f"| {row.batch} | {row.first_file} .. {row.last_file} | {row.n_images} | "
            f"{row.beam_statistic:.1f} ({row.beam_threshold:.1f}) | {kv:.3f}, {filt:.2f} | {similarity} | "
            f"{'**' + row.reasons + '**' if row.alarm else 'no'} |"
        )
    return "\n".join(lines) + "\n"
