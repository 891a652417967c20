"""The robustness suite: the same fresh specimens re-imaged under named instrument conditions, every model scored.

A model that has learned the alloy keeps its score when only the instrument changes; one that has learned
the training detector's fixed pattern (per-pixel gain and offset, dead pixels) does not. Each condition is
the suite's base configuration (the evaluation set's: the training data's simulator settings and detector
unit, balanced classes, a seed of its own) with the condition's overrides (``RobustnessParams``) applied.
One seed draws every condition's specimens and noise, so the alloys, thicknesses, compositions and image ids
are identical across conditions and a score's change is the instrument's doing alone. (The ``absorption``
label is an effective attenuation under the instrument's spectrum, so a beam or scintillator change moves it;
the suite scores the alloy.)

Per model and condition: macro AP (scikit-learn's, as ``comparison.md``) with its specimen-bootstrap
interval, accuracy with its interval, and the mean top probability (confidence: a model right 20% of the time
at confidence 1.0 is worse than one that knows it is lost).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.bootstrap import classification_intervals
from alloy_mtl.evaluation.classification import classification_metrics, prob_columns
from alloy_mtl.evaluation.comparison import to_markdown
from alloy_mtl.evaluation.ensemble import ensemble_predictions
from alloy_mtl.evaluation.ensemble_selection import selected_weights
from alloy_mtl.evaluation.evaluation_set import evaluation_set_config, without_instrument
from alloy_mtl.evaluation.params import (
    EvaluationSetParams,
    InstrumentOverrides,
    RobustnessParams,
)
from alloy_mtl.evaluation.plots import ap_heatmap
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument import TOLERANCE_KEYS, Tolerances, instrument_changes
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

logger = logging.getLogger(__name__)

CONDITION = "condition"
CLASSIFICATION_COLUMNS = ("image_id", "specimen_id", "alloy_true", "alloy_pred", *prob_columns(ALLOYS))
TABLE_COLUMNS = (
    "model",
    CONDITION,
    "n_images",
    "n_specimens",
    "macro_ap",
    "macro_ap_ci_low",
    "macro_ap_ci_high",
    "macro_ap_change",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "mean_confidence",
)
ConditionImages = dict[str, tuple[np.ndarray, pd.DataFrame]]
#: Kinds of condition. The summary scores (and the promotion gate on them) cover ``unseen_detector`` (only the
#: detector unit differs) and ``in_tolerance`` (every setting it changes lies inside ``generation.tolerances``);
#: ``reference`` is the training detector, ``out_of_tolerance`` and ``other`` (e.g. a perfect detector) are
#: reported but not summarised: no lab instrument is promised to be there.
KINDS = ("reference", "unseen_detector", "in_tolerance", "out_of_tolerance", "other")
SUMMARISED_KINDS = ("unseen_detector", "in_tolerance")
SUMMARY = "summary"
"""The key of each model's summary scores beside its conditions (MLflow ``robustness.summary.<metric>``)."""


def base_config(generation: Mapping[str, Any] | None, params: RobustnessParams) -> SimulationConfig:
    """The suite's nominal configuration: the evaluation set's recipe with the suite's size and seed, imaged by
    the training data's detector unit 0 at the nominal beam (the ``same_detector`` reference)."""
    settings = EvaluationSetParams(
        n_images=max(params.n_images, 1),
        seed_offset=params.seed_offset,
        images_per_specimen=params.images_per_specimen,
        detector_seed=None,
    )
    return evaluation_set_config(generation, settings)


def apply_overrides(base: SimulationConfig, overrides: InstrumentOverrides) -> SimulationConfig:
    """``base`` with a condition's absolute values set and its ``<field>_scale`` factors applied.

    Raises:
        ValueError: the overrides change the number of channels or give an invalid configuration.
    """
    changes = instrument_changes(base, overrides.overrides())
    if "kv" in changes and len(changes["kv"]) != len(base.kv):
        raise ValueError(
            f"kv has {len(changes['kv'])} channels, the training data {len(base.kv)} ({base.kv_label} kV)"
        )
    return dataclasses.replace(base, **changes)


def condition_configs(
    generation: Mapping[str, Any] | None, params: RobustnessParams
) -> dict[str, SimulationConfig]:
    """Every condition's simulator configuration, in the order of ``params.conditions``.

    Raises:
        ValueError: listing every condition whose overrides fail (naming the condition), including one that
            sets ``detector_seed`` to the training data's own detector unit.
    """
    base = base_config(generation, params)
    training_detector = base.detector_unit  # the evaluation set keeps the training data's unit
    configs: dict[str, SimulationConfig] = {}
    problems: list[str] = []
    for name, overrides in params.conditions.items():
        if overrides.detector_seed == training_detector:
            problems.append(
                f"{name}: detector_seed {training_detector} is the training data's detector unit "
                "(leave detector_seed unset to image with it)"
            )
            continue
        try:
            configs[name] = apply_overrides(base, overrides)
        except ValueError as err:
            problems.append(f"{name}: {err}")
    if problems:
        raise ValueError("evaluation.robustness.conditions:\n  " + "\n  ".join(problems))
    return configs


def condition_kind(name: str, overrides: InstrumentOverrides, tolerances: Tolerances, reference: str) -> str:
    """The :data:`KINDS` entry of one condition, given the declared tolerances (``generation.tolerances``)."""
    if name == reference:
        return "reference"
    changes = {k: v for k, v in overrides.overrides().items() if k != "detector_seed"}
    if not changes:
        return "unseen_detector" if overrides.detector_seed is not None else "reference"
    declared = {key: (low, high) for key, low, high in tolerances}
    if not set(changes) <= set(declared):
        tolerance_like = set(changes) & set(TOLERANCE_KEYS)
        return "out_of_tolerance" if tolerance_like == set(changes) else "other"
    inside = all(declared[k][0] <= float(v) <= declared[k][1] for k, v in changes.items())
    return "in_tolerance" if inside else "out_of_tolerance"


def condition_kinds(generation: Mapping[str, Any] | None, params: RobustnessParams) -> dict[str, str]:
    """Every condition's kind (:func:`condition_kind`) against the training data's declared tolerances."""
    tolerances = SimulationConfig.from_params(generation).tolerances
    return {
        name: condition_kind(name, overrides, tolerances, params.reference)
        for name, overrides in params.conditions.items()
    }


def summary_scores(
    table: pd.DataFrame, kinds: Mapping[str, str], ceiling: str = "physics_limit"
) -> dict[str, dict[str, float]]:
    """Per model, over the unseen-detector and in-tolerance conditions: ``worst_macro_ap`` (the lowest: a lab
    has one instrument, unknown in advance, and needs the floor), ``mean_macro_ap``, ``n_conditions`` and, when
    the ``ceiling`` model is in the table, ``worst_gap_to_ceiling`` (the largest shortfall from its macro AP
    under the same condition)."""
    chosen = table[table[CONDITION].map(kinds).isin(SUMMARISED_KINDS)]
    limit = chosen[chosen["model"] == ceiling].set_index(CONDITION)["macro_ap"].astype(float)
    result: dict[str, dict[str, float]] = {}
    for model, group in chosen.groupby("model", sort=False):
        frame = group[np.isfinite(group["macro_ap"].astype(float))]
        if frame.empty:
            continue
        values = frame["macro_ap"].astype(float)
        scores = {
            "worst_macro_ap": float(values.min()),
            "mean_macro_ap": float(values.mean()),
            "n_conditions": float(len(values)),
        }
        gaps = frame[CONDITION].map(limit).to_numpy(dtype=float) - values.to_numpy()
        if model != ceiling and np.isfinite(gaps).any():
            scores["worst_gap_to_ceiling"] = float(np.nanmax(gaps))
        result[str(model)] = scores
    return result


def simulate_conditions(generation: Mapping[str, Any] | None, params: RobustnessParams) -> ConditionImages:
    """``{condition: (images float32 (N, C, H, W), metadata with suite specimen ids)}``; empty when off. The
    metadata does not record the condition's instrument: models are told the one fitted from its images."""
    if not params.enabled or params.n_images == 0 or not params.conditions:
        return {}
    result: ConditionImages = {}
    for name, config in condition_configs(generation, params).items():
        images, metadata = simulate_dataset(config)
        metadata["specimen_id"] = "robust-" + metadata["specimen_id"].astype(str)
        result[name] = (images, without_instrument(metadata))
    logger.info("robustness suite: %d conditions of %d images", len(result), params.n_images)
    return result


def stack_conditions(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One tidy predictions table with a ``condition`` column (the first column)."""
    if not frames:
        return pd.DataFrame(columns=[CONDITION, "image_id"])
    return pd.concat(
        [frame.assign(**{CONDITION: name}) for name, frame in frames.items()], ignore_index=True
    )[[CONDITION, *next(iter(frames.values())).columns]]


def by_condition(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The inverse of :func:`stack_conditions` (conditions in order of first appearance)."""
    if predictions.empty:
        return {}
    return {
        str(name): frame.drop(columns=CONDITION).reset_index(drop=True)
        for name, frame in predictions.groupby(CONDITION, sort=False)
    }


def physics_predictions(
    estimator: PhysicsLimitEstimator, images: np.ndarray, metadata: pd.DataFrame
) -> pd.DataFrame:
    """The physics-limit estimator's alloy predictions in the predictions contract (plus ``specimen_id``)."""
    estimate = estimator.predict(images)
    frame = pd.DataFrame(
        {
            "image_id": metadata["image_id"].to_numpy(),
            "specimen_id": metadata["specimen_id"].to_numpy(),
            "alloy_true": metadata["alloy"].astype(str).to_numpy(),
            "alloy_pred": estimate["alloy_pred"].astype(str).to_numpy(),
        }
    )
    for alloy in ALLOYS:
        frame[f"prob_{alloy}"] = estimate[f"prob_{alloy}"].to_numpy()
    return frame


def soft_ensemble(
    predictions: Mapping[str, pd.DataFrame], weights: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Soft-voting ensemble of several models' stacked predictions, condition by condition (``weights``: the
    members' weights, see :func:`~alloy_mtl.evaluation.ensemble.ensemble_predictions`; None: equal)."""
    per_model = {name: by_condition(frame) for name, frame in predictions.items()}
    conditions = next(iter(per_model.values()))
    combined = {}
    for condition in conditions:
        members = {
            name: frames[condition][list(CLASSIFICATION_COLUMNS)] for name, frames in per_model.items()
        }
        specimens = members[next(iter(members))].set_index("image_id")["specimen_id"]
        soft = ensemble_predictions(
            {name: frame.drop(columns="specimen_id") for name, frame in members.items()},
            "soft",
            weights=weights,
        )
        combined[condition] = soft.assign(specimen_id=soft["image_id"].map(specimens).to_numpy())
    return stack_conditions(combined)


def condition_metrics(
    predictions: pd.DataFrame, *, n_resamples: int, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Macro AP and accuracy (each with its specimen-bootstrap interval) and mean confidence of one table."""
    metrics = classification_metrics(predictions, ALLOYS)
    probs = predictions[prob_columns(ALLOYS)].to_numpy(dtype=float)
    row: dict[str, Any] = {
        "n_images": len(predictions),
        "n_specimens": int(predictions["specimen_id"].nunique()),
        "macro_ap": metrics["macro_ap"],
        "macro_ap_ci_low": None,
        "macro_ap_ci_high": None,
        "accuracy": metrics["accuracy"],
        "accuracy_ci_low": None,
        "accuracy_ci_high": None,
        "mean_confidence": float(probs.max(axis=1).mean()),
    }
    if n_resamples > 0:
        with np.errstate(invalid="ignore", divide="ignore"):  # resamples without some alloy: NaN, left out
            intervals = classification_intervals(
                predictions, ALLOYS, n_resamples=n_resamples, seed=seed, level=level
            )
        for metric in ("macro_ap", "accuracy"):
            if intervals[metric] is not None:
                row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = intervals[metric]
    return row


def robustness_table(
    predictions: Mapping[str, pd.DataFrame],
    reference: str,
    *,
    n_resamples: int,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """The tidy table: one row per model and condition (``TABLE_COLUMNS``).

    Args:
        predictions: model name -> its stacked predictions (:func:`stack_conditions`); empty tables are skipped.
        reference: the condition ``macro_ap_change`` is measured from (a model's own score under it).
    """
    rows = []
    for model, stacked in predictions.items():
        for condition, frame in by_condition(stacked).items():
            metrics = condition_metrics(frame, n_resamples=n_resamples, seed=seed, level=level)
            rows.append({"model": model, CONDITION: condition, **metrics})
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "macro_ap_change"])
    reference_ap = table[table[CONDITION] == reference].set_index("model")["macro_ap"]
    table["macro_ap_change"] = table["macro_ap"] - table["model"].map(reference_ap)
    return table[list(TABLE_COLUMNS)]


def model_metrics(table: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {condition: {metric: value}}}`` of the numeric columns (MLflow ``robustness.<condition>.*``)."""
    numeric = [c for c in TABLE_COLUMNS if c not in ("model", CONDITION)]
    result: dict[str, dict[str, dict[str, float]]] = {}
    for row in table.to_dict("records"):
        values = {c: float(row[c]) for c in numeric if row[c] is not None and np.isfinite(row[c])}
        result.setdefault(str(row["model"]), {})[str(row[CONDITION])] = values
    return result


def interval_cell(row: pd.Series, metric: str = "macro_ap") -> str:
    """``metric`` of a table row with its interval (``<metric>_ci_low/_high``) as ``0.912 [0.890, 0.931]``; the
    value alone where the interval is missing, ``n/a`` where the value is."""
    value, low, high = row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if value is None or not np.isfinite(value):
        return "n/a"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def wide_table(table: pd.DataFrame, value: str = "macro_ap") -> pd.DataFrame:
    """Models x conditions of one metric (rows and columns in the table's order)."""
    wide = table.pivot(index="model", columns=CONDITION, values=value)
    return wide.loc[table["model"].unique(), table[CONDITION].unique()].astype(float)


def robustness_markdown(
    table: pd.DataFrame,
    conditions: Mapping[str, InstrumentOverrides],
    reference: str,
    level: float,
    kinds: Mapping[str, str] | None = None,
) -> str:
    """The report: the conditions (with their kind), the summary over unseen detectors and in-tolerance
    conditions, macro AP with intervals, the change from the reference, accuracy and confidence."""
    kinds = dict(kinds or {})
    lines = ["# Robustness to the instrument", ""]
    if table.empty:
        return "\n".join([*lines, "No robustness suite: it is off, or the data are not generated.", ""])
    n_images = int(table["n_images"].max())
    n_specimens = int(table["n_specimens"].max())
    lines += [
        f"The same {n_specimens} fresh specimens ({n_images} images, balanced) re-imaged under each condition;",
        "only the instrument differs. `physics_limit` is the maximum-likelihood estimator told the nominal",
        "instrument and the declared tolerances (`generation.tolerances`), inside which it fits each condition's",
        f"instrument from the images alone: the ceiling of that condition. Reference condition: `{reference}`.",
        "",
        "## Conditions",
        "",
        *[
            f"- `{name}`"
            + (f" ({kinds[name].replace('_', ' ')})" if name in kinds else "")
            + ": "
            + (", ".join(f"{k} = {v}" for k, v in overrides.overrides().items()) or "nominal")
            for name, overrides in conditions.items()
        ],
        "",
    ]
    summary = summary_scores(table, kinds)
    if summary:
        frame = pd.DataFrame.from_dict(summary, orient="index").drop(columns="n_conditions")
        lines += [
            "## Summary over unseen detectors and in-tolerance conditions",
            "",
            f"Worst and mean macro AP over the {int(next(iter(summary.values()))['n_conditions'])} conditions a "
            "lab's instrument may be in (the promotion gate's `robustness.summary.worst_macro_ap`).",
            "",
            to_markdown(frame.rename_axis("model")),
            "",
        ]
    lines += [f"## Macro AP ({level:.0%} specimen-bootstrap intervals)", ""]
    cells = table.assign(cell=table.apply(interval_cell, axis=1))
    ap = cells.pivot(index="model", columns=CONDITION, values="cell")
    ap = ap.loc[table["model"].unique(), table[CONDITION].unique()]
    sections = [("Change of macro AP from the reference", "macro_ap_change"), ("Accuracy", "accuracy")]
    sections.append(("Mean top probability (confidence)", "mean_confidence"))
    lines += [to_markdown(ap.rename_axis("model")), ""]
    for title, column in sections:
        lines += [f"## {title}", "", to_markdown(wide_table(table, column).rename_axis("model")), ""]
    return "\n".join(lines)


def robustness_figure(table: pd.DataFrame) -> Figure:
    """Heatmap of macro AP, models x conditions (an explanatory placeholder when there is no suite)."""
    if table.empty:
        figure = Figure(figsize=(4, 1.5))
        figure.text(0.5, 0.5, "no robustness suite (off, or lab data)", ha="center", va="center")
        return figure
    figure = ap_heatmap(wide_table(table), title="Macro AP by instrument condition")
    for label in figure.axes[0].get_xticklabels():
        label.set(rotation=40, ha="right")
    figure.tight_layout()
    return figure


def predictions_by_model(
    architectures: Mapping[str, pd.DataFrame],
    physics_limit: pd.DataFrame | None = None,
    selection: Mapping[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """The rows of the table in order: the architectures' stacked predictions, ``ensemble_soft`` (their soft
    vote, when two or more predicted and none is missing), ``ensemble_selected`` (the same, weighted as the
    evaluation pipeline chose on the validation split: ``selection``, see
    :mod:`alloy_mtl.evaluation.ensemble_selection`) and ``physics_limit``; empty tables are left out."""
    result = {name: frame for name, frame in architectures.items() if not frame.empty}
    if len(result) >= 2 and len(result) == len(architectures):
        members = dict(result)
        result["ensemble_soft"] = soft_ensemble(members)
        if selection is not None:
            result["ensemble_selected"] = soft_ensemble(members, selected_weights(selection, list(members)))
    if physics_limit is not None and not physics_limit.empty:
        result["physics_limit"] = physics_limit
    return result
