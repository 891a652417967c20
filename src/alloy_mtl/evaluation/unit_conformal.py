"""Conformal sets and intervals refitted on labelled radiographs from the detector in operation (a lab's unit).

A model's sets are fitted on generated images of 16 validation detector units (``training.conformal_set``):
they cover every alloy at 90 % on average over units, but one unit's fixed pattern moves each alloy's scores a
little, and on a single unseen unit single alloys landed 6 points below or 5 above (``docs/results.md``,
conformal sets). Split conformal promises coverage on data exchangeable with what it is fitted on, so a lab that
wants the promise for its own unit fits the sets on labelled images from that unit: the same class-conditional
LAC thresholds (:mod:`alloy_mtl.mtl.models.conformal`) and absolute-residual half-widths, on the model's own
answers for the lab's images.

The refit is checked on the same folder without being fitted on what it is checked on: the specimens are split
into folds, each fold's images are covered by sets fitted on the other folds (cross-conformal), beside the
model's shipped sets (fitted on nothing of the folder). Nothing here knows Kedro or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from alloy_mtl.config import ParamsModel
from alloy_mtl.mtl.models.conformal import DEFAULT_COVERAGE, conformal_quantile, set_labels

__all__ = [
    "FITTED_ON_COLUMN",
    "TRUE_SUFFIX",
    "UnitConformalParams",
    "UnitSets",
    "cross_fitted_check",
    "fewest_per_class",
    "fit_unit_sets",
    "model_sets",
    "refit_record",
    "served_columns",
    "specimen_folds",
    "unit_conformal_markdown",
]

TRUE_SUFFIX = "_true"
"""A labelled frame's truth columns: ``alloy_true``, ``thickness_mm_true``, ``absorption_true``."""
SET_SUFFIX, SIZE_SUFFIX = "_set", "_set_size"
FITTED_ON_COLUMN = "conformal_fitted_on"
ADVISED_PER_CLASS = 200
"""Labelled images of each alloy below which a refit is, on average, farther from its target than the shipped
sets on an unseen unit (``benchmarks/bench_unit_conformal.py``: at 1,000 images, 200 per alloy in 3-image
specimens, both 2.3 points on average; at 500, 2.9 against 2.3)."""


class UnitConformalParams(ParamsModel):
    """``inference.unit_conformal``: conformal sets refitted on labelled images from the detector in operation."""

    calibration: str | None = None
    """Folder of labelled radiographs from the detector the predicted images come from (``csv_folder``:
    ``metadata.csv`` with ``image_id, specimen_id, alloy, path`` and ``thickness_mm`` / ``absorption`` where
    known, as the lab ingest reads it; the calibration folder of ``calibrate_instrument`` is one). null: the
    model's own sets. Each alloy needs at least ``coverage / (1 - coverage)`` images (9 at 0.9); with fewer than
    200 of an alloy a refit spreads further from its target than the model's own sets miss it by on an unseen unit
    (``benchmarks/bench_unit_conformal.md``), which the report says."""
    coverage: float = Field(DEFAULT_COVERAGE, gt=0.0, lt=1.0)
    """Coverage of the refitted sets and intervals, per alloy."""
    folds: int = Field(5, ge=2)
    """Specimen folds of the check: each fold's images are covered by sets fitted on the others."""
    seed: int = 0
    """Seed of the assignment of specimens to folds."""

    @field_validator("calibration")
    @classmethod
    def _calibration_folder(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_dir():
            raise ValueError(f"'{Path(value).expanduser()}' is not a folder (expected a labelled csv_folder)")
        return value


def fewest_per_class(coverage: float) -> int:
    """The fewest labelled images of a class that give a finite conformal threshold at ``coverage``."""
    return math.ceil(coverage / (1.0 - coverage) - 1e-9)


@dataclass(frozen=True)
class UnitSets:
    """Refitted class thresholds (``1 - p_y <= q_y`` puts ``y`` in the set) and regression half-widths by target
    column (a target without labels keeps the model's interval: absent here)."""

    coverage: float
    class_quantiles: dict[str, float]
    class_counts: dict[str, int]
    half_widths: dict[str, float] = field(default_factory=dict)
    target_counts: dict[str, int] = field(default_factory=dict)
    fitted_on: str = ""

    def members(self, predictions: pd.DataFrame) -> np.ndarray:
        """(N, K) bool set membership of each row (classes in :attr:`class_quantiles` order)."""
        probs = predictions[[f"prob_{c}" for c in self.class_quantiles]].to_numpy(np.float64)
        return 1.0 - probs <= np.array(list(self.class_quantiles.values()))[None, :]

    def apply(self, predictions: pd.DataFrame, task: str = "alloy") -> pd.DataFrame:
        """``predictions`` (the model's output columns) with ``<task>_set``, ``<task>_set_size`` and each refitted
        target's ``_low`` / ``_high`` recomputed, and ``conformal_fitted_on`` naming what the sets were fitted on;
        rows the model did not answer (NaN probabilities) are left as they were."""
        frame = predictions.copy()
        answered = frame[[f"prob_{c}" for c in self.class_quantiles]].notna().all(axis=1).to_numpy()
        classes = list(self.class_quantiles)
        members = self.members(frame.loc[answered])
        if f"{task}{SET_SUFFIX}" in frame.columns:
            frame[f"{task}{SET_SUFFIX}"] = frame[f"{task}{SET_SUFFIX}"].astype(object)
            frame.loc[answered, f"{task}{SET_SUFFIX}"] = set_labels(classes, members)
            frame.loc[answered, f"{task}{SIZE_SUFFIX}"] = members.sum(axis=1)
        for target, width in self.half_widths.items():
            if {target, f"{target}_low", f"{target}_high"} <= set(frame.columns):
                point = pd.to_numeric(frame[target], errors="coerce")
                frame[f"{target}_low"] = (point - width).where(answered, frame[f"{target}_low"])
                frame[f"{target}_high"] = (point + width).where(answered, frame[f"{target}_high"])
        frame[FITTED_ON_COLUMN] = np.where(answered, self.fitted_on, "").astype(object)
        return frame

    def to_dict(self) -> dict[str, Any]:
        """The record saved with the run (JSON-able)."""
        return {
            "coverage": self.coverage,
            "class_quantiles": dict(self.class_quantiles),
            "class_counts": dict(self.class_counts),
            "half_widths": dict(self.half_widths),
            "target_counts": dict(self.target_counts),
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> UnitSets:
        """The inverse of :meth:`to_dict`."""
        return cls(
            coverage=float(record["coverage"]),
            class_quantiles={str(k): float(v) for k, v in record["class_quantiles"].items()},
            class_counts={str(k): int(v) for k, v in record["class_counts"].items()},
            half_widths={str(k): float(v) for k, v in (record.get("half_widths") or {}).items()},
            target_counts={str(k): int(v) for k, v in (record.get("target_counts") or {}).items()},
            fitted_on=str(record.get("fitted_on", "")),
        )


def _truth_index(labelled: pd.DataFrame, classes: Sequence[str], task: str) -> np.ndarray:
    return pd.Index(list(classes)).get_indexer(labelled[f"{task}{TRUE_SUFFIX}"].astype(str).to_numpy())


def fit_unit_sets(
    labelled: pd.DataFrame,
    classes: Sequence[str],
    targets: Sequence[str],
    coverage: float = DEFAULT_COVERAGE,
    *,
    task: str = "alloy",
    fitted_on: str = "",
) -> UnitSets:
    """Fit the class thresholds and half-widths on the model's answers for labelled images.

    Args:
        labelled: one row per labelled image: ``prob_<class>``, ``<task>_true``, and per target the model's
            ``<target>`` with the truth ``<target>_true`` (NaN where not known).
        classes: the model's classes, in its ``prob_`` order.
        targets: regression target columns (``thickness_mm``, ``absorption``); one without any label is left to
            the model's own interval.

    Raises:
        ValueError: a label that is not one of ``classes``, or a class with fewer labelled images than a finite
            threshold needs at ``coverage`` (:func:`fewest_per_class`), every such problem named.
    """
    index = _truth_index(labelled, classes, task)
    problems = []
    strange = sorted(set(labelled.loc[index < 0, f"{task}{TRUE_SUFFIX}"].astype(str)))
    if strange:
        problems.append(f"labels {strange} are not among the model's classes {list(classes)}")
    fewest = fewest_per_class(coverage)
    counts = {c: int((index == i).sum()) for i, c in enumerate(classes)}
    short = {c: n for c, n in counts.items() if n < fewest}
    if short:
        problems.append(
            f"too few labelled images for {coverage:g} coverage per alloy (at least {fewest} each): "
            + ", ".join(f"{c} has {n}" for c, n in short.items())
        )
    if problems:
        raise ValueError("; ".join(problems))
    probs = labelled[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    quantiles = {c: conformal_quantile(1.0 - probs[index == i, i], coverage) for i, c in enumerate(classes)}
    widths, target_counts = {}, {}
    for target in targets:
        residuals = _residuals(labelled, target)
        if residuals.size:
            widths[target] = conformal_quantile(residuals, coverage)
            target_counts[target] = int(residuals.size)
    return UnitSets(coverage, quantiles, counts, widths, target_counts, fitted_on)


def _residuals(labelled: pd.DataFrame, target: str) -> np.ndarray:
    if f"{target}{TRUE_SUFFIX}" not in labelled.columns or target not in labelled.columns:
        return np.empty(0)
    error = np.abs(
        labelled[f"{target}{TRUE_SUFFIX}"].to_numpy(np.float64) - labelled[target].to_numpy(np.float64)
    )
    return error[np.isfinite(error)]


def specimen_folds(groups: Sequence[Any], folds: int, seed: int = 0) -> np.ndarray:
    """The fold (0 .. k-1) of each image: every image of a specimen (``groups``) in one fold, the specimens
    dealt round the ``k = min(folds, specimens)`` folds in a seeded random order (at least 2 folds)."""
    groups = np.asarray(list(groups))
    unique, inverse = np.unique(groups, return_inverse=True)
    k = max(2, min(int(folds), len(unique)))
    return (np.random.default_rng(seed).permutation(len(unique)) % k)[inverse]


def cross_fitted_check(
    labelled: pd.DataFrame,
    classes: Sequence[str],
    targets: Sequence[str],
    coverage: float = DEFAULT_COVERAGE,
    *,
    groups: Sequence[Any] | None = None,
    folds: int = 5,
    seed: int = 0,
    task: str = "alloy",
) -> dict[str, Any]:
    """Coverage on the labelled folder of the model's shipped sets (its ``<task>_set`` column and
    ``<target>_low/_high``) and of sets refitted on the folder, each image covered by sets fitted on the other
    folds of specimens (``groups``, default: one per image); per class ``n``, both coverages and mean set
    sizes, and per target both interval coverages. A fold whose complement leaves a class too few images for a
    finite threshold counts that class as always in the set (what a refit on so few would do)."""
    index = _truth_index(labelled, classes, task)
    groups = np.asarray(range(len(labelled)) if groups is None else list(groups))
    fold = specimen_folds(groups, folds, seed)
    folds = int(fold.max()) + 1
    probs = labelled[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    refit = np.zeros(probs.shape, dtype=bool)
    intervals = {t: np.zeros(len(labelled), dtype=bool) for t in targets}
    for k in range(folds):
        held, rest = fold == k, fold != k
        q = [conformal_quantile(1.0 - probs[rest & (index == i), i], coverage) for i in range(len(classes))]
        refit[held] = 1.0 - probs[held] <= np.asarray(q)[None, :]
        for target in targets:
            residuals = _residuals(labelled.loc[rest], target)
            width = conformal_quantile(residuals, coverage) if residuals.size else math.inf
            error = _abs_error(labelled.loc[held], target)
            intervals[target][held] = error <= width
    shipped = _shipped_members(labelled, classes, task)
    per_class: dict[str, Any] = {}
    for i, c in enumerate(classes):
        rows = index == i
        if not rows.any():
            continue
        per_class[c] = {
            "n": int(rows.sum()),
            "shipped_coverage": float(shipped[rows, i].mean()) if shipped is not None else float("nan"),
            "refit_coverage": float(refit[rows, i].mean()),
            "shipped_set_size": float(shipped[rows].sum(axis=1).mean())
            if shipped is not None
            else float("nan"),
            "refit_set_size": float(refit[rows].sum(axis=1).mean()),
        }
    out_intervals: dict[str, Any] = {}
    for target in targets:
        error = _abs_error(labelled, target)
        known = np.isfinite(error)
        if not known.any():
            continue
        low, high = labelled.get(f"{target}_low"), labelled.get(f"{target}_high")
        truth = labelled[f"{target}{TRUE_SUFFIX}"].to_numpy(np.float64)
        inside = (
            (low.to_numpy(np.float64) <= truth) & (truth <= high.to_numpy(np.float64))
            if low is not None and high is not None
            else np.full(len(truth), np.nan)
        )
        out_intervals[target] = {
            "n": int(known.sum()),
            "shipped_coverage": float(np.mean(inside[known])),
            "refit_coverage": float(intervals[target][known].mean()),
        }
    return {
        "coverage": coverage,
        "folds": int(folds),
        "specimens": len(np.unique(groups)),
        "per_class": per_class,
        "intervals": out_intervals,
    }


def _abs_error(labelled: pd.DataFrame, target: str) -> np.ndarray:
    if f"{target}{TRUE_SUFFIX}" not in labelled.columns or target not in labelled.columns:
        return np.full(len(labelled), np.nan)
    return np.abs(
        labelled[f"{target}{TRUE_SUFFIX}"].to_numpy(np.float64) - labelled[target].to_numpy(np.float64)
    )


def _shipped_members(labelled: pd.DataFrame, classes: Sequence[str], task: str) -> np.ndarray | None:
    column = f"{task}{SET_SUFFIX}"
    if column not in labelled.columns:
        return None
    sets = labelled[column].fillna("").astype(str).str.split("|")
    return np.array([[c in members for c in classes] for members in sets], dtype=bool)


def model_sets(conformal: Any, classes: Sequence[str], targets: Mapping[str, str]) -> UnitSets:
    """A model's own fitted sets (its ``ConformalSets``: ``coverage``, ``class_quantiles``, ``half_width(task)``)
    as :class:`UnitSets`; ``targets``: regression task name -> target column."""
    return UnitSets(
        coverage=float(conformal.coverage),
        class_quantiles=dict(zip(classes, conformal.class_quantiles.tolist(), strict=True)),
        class_counts={},
        half_widths={target: conformal.half_width(task) for task, target in targets.items()},
        fitted_on="model",
    )


def served_columns(
    predictions: pd.DataFrame, sets: UnitSets, targets: Mapping[str, str], task: str = "alloy"
) -> pd.DataFrame:
    """Labelled predictions in the evaluation contract (``prob_<class>``, ``<task>_true``, ``<stem>_pred`` /
    ``<stem>_true``) as the served model's columns with ``sets``' answers (:meth:`UnitSets.apply`):
    ``<task>_set`` and each target's ``<stem>`` with ``_low`` / ``_high`` (``targets``: regression target column ->
    contract stem), what :func:`cross_fitted_check` compares a refit with."""
    frame = predictions.copy()
    for target, stem in targets.items():
        frame[target] = frame[f"{stem}_pred"].to_numpy(np.float64)
        frame[f"{target}{TRUE_SUFFIX}"] = frame[f"{stem}_true"].to_numpy(np.float64)
        frame[f"{target}_low"] = frame[f"{target}_high"] = (
            np.nan
        )  # a target without a width keeps no interval
    frame[f"{task}{SET_SUFFIX}"], frame[f"{task}{SIZE_SUFFIX}"] = "", -1
    return sets.apply(frame, task)


def refit_record(
    answers: pd.DataFrame,
    classes: Sequence[str],
    groups: Sequence[Any],
    params: UnitConformalParams,
    *,
    fitted_on: str,
    model_uri: str,
) -> dict[str, Any]:
    """The sets refitted on a model's ``answers`` for a labelled folder (:func:`fit_unit_sets`; the targets are
    the answers' ``<target>_low`` columns) with their :func:`cross_fitted_check` over the folder's specimens
    (``groups``): what inference applies and reports.

    Raises:
        ValueError: as :func:`fit_unit_sets`.
    """
    targets = [c.removesuffix("_low") for c in answers.columns if c.endswith("_low")]
    sets = fit_unit_sets(answers, classes, targets, params.coverage, fitted_on=fitted_on)
    check = cross_fitted_check(
        answers, classes, targets, params.coverage, groups=groups, folds=params.folds, seed=params.seed
    )
    few = {c: n for c, n in sets.class_counts.items() if n < ADVISED_PER_CLASS}
    advice = (
        f"fewer than {ADVISED_PER_CLASS} labelled images of "
        + ", ".join(f"{c} ({n})" for c, n in few.items())
        + ": a refit on so few spreads more from folder to folder than the model's own sets miss by on an unseen "
        "unit (benchmarks/bench_unit_conformal.md); label more of them, or keep the model's sets"
        if few
        else ""
    )
    return {**sets.to_dict(), "model_uri": model_uri, "check": check, "advice": advice}


def unit_conformal_markdown(record: Mapping[str, Any]) -> str:
    """The report of a refit (``record``: ``{"skipped"}`` or the sets' :meth:`UnitSets.to_dict` with ``check``
    and ``model_uri``)."""
    lines = ["# Conformal sets fitted on the detector in operation", ""]
    if record.get("skipped"):
        return "\n".join([*lines, str(record["skipped"]), ""])
    check = record["check"]
    target = f"{record['coverage']:.0%}"
    lines += [
        f"Sets and intervals for {record.get('model_uri', 'the model')} refitted on {record['fitted_on']} "
        f"({sum(record['class_counts'].values())} labelled images, {check['specimens']} specimens) at {target} "
        "per alloy; the predictions use them (`conformal_fitted_on`). Coverage on that folder: the model's "
        f"shipped sets (fitted on generated images), and the refit cross-fitted over {check['folds']} specimen "
        "folds (each image covered by sets fitted without its specimen). With n images of an alloy the measured "
        "coverage has a spread of about sqrt(0.09 / n) (3 points at n = 100).",
        "",
        "| alloy | n | threshold q | shipped coverage | refit coverage | shipped set size | refit set size |",
        "|---|---|---|---|---|---|---|",
    ]
    for alloy, row in check["per_class"].items():
        lines.append(
            f"| {alloy} | {row['n']} | {record['class_quantiles'][alloy]:.4f} | {row['shipped_coverage']:.3f} | "
            f"{row['refit_coverage']:.3f} | {row['shipped_set_size']:.2f} | {row['refit_set_size']:.2f} |"
        )
    if record.get("advice"):
        lines += ["", f"**Note:** {record['advice']}."]
    if check["intervals"]:
        lines += [
            "",
            "| target | n | half-width | shipped coverage | refit coverage |",
            "|---|---|---|---|---|",
        ]
        for name, row in check["intervals"].items():
            width = record["half_widths"].get(name)
            lines.append(
                f"| {name} | {row['n']} | {'' if width is None else f'{width:.4g}'} | "
                f"{row['shipped_coverage']:.3f} | {row['refit_coverage']:.3f} |"
            )
    return "\n".join([*lines, ""])
