"""Ensembles of several models' test predictions, returned in the same predictions contract.

Models are aligned by ``image_id`` (every model must have predicted exactly the same images).
Probabilities are averaged in both methods, so AP, ROC and calibration of an ensemble always use the
mean probabilities; the methods differ in ``alloy_pred``:

* soft voting: the alloy with the highest mean probability;
* hard voting: the alloy most models predict, a tie broken by the highest mean probability among
  the tied alloys.

Both take optional member ``weights`` (non-negative, normalised to sum to 1; a model they do not name weighs
0): the mean is then the weighted mean and each vote counts its model's weight. The weights of the
``ensemble_selected`` row are chosen on the validation split (:mod:`alloy_mtl.evaluation.ensemble_selection`).

Regression predictions (``<target>_pred``) are averaged over the models that have the column, or over the
members that :func:`regression_members` keeps: a model whose regression head failed (its validation error a
multiple of the best member's) would otherwise drag the average with it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.classification import check_predictions, examples_text, label_indices, prob_columns

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("soft", "hard")


def align_predictions(
    predictions: Mapping[str, pd.DataFrame], alloys: Sequence[str] = ALLOYS
) -> dict[str, pd.DataFrame]:
    """Each model's table indexed by ``image_id`` in the first model's row order; ``ValueError`` naming the model
    when a table breaks the contract, repeats an image or covers other images than the first."""
    if not predictions:
        raise ValueError("ensemble: no model predictions given")
    aligned: dict[str, pd.DataFrame] = {}
    reference_name, reference_ids = None, None
    for name, frame in predictions.items():
        check_predictions(frame, alloys, name=f"model {name!r}")
        duplicated = frame["image_id"].duplicated()
        if duplicated.any():
            raise ValueError(
                f"ensemble: model {name!r} has duplicated image_id {examples_text(frame.loc[duplicated, 'image_id'])}"
            )
        ids = frame["image_id"].astype(str)
        if reference_ids is None:
            reference_name, reference_ids = name, ids
        else:
            missing = pd.Series(sorted(set(reference_ids) - set(ids)))
            extra = pd.Series(sorted(set(ids) - set(reference_ids)))
            if len(missing) or len(extra):
                raise ValueError(
                    f"ensemble: model {name!r} predicted a different set of images than model "
                    f"{reference_name!r}: {len(missing)} missing ({examples_text(missing)}), "
                    f"{len(extra)} extra ({examples_text(extra)})"
                )
        aligned[name] = frame.assign(image_id=ids).set_index("image_id").loc[reference_ids.to_numpy()]
    return aligned


def check_same_truth(aligned: dict[str, pd.DataFrame], column: str) -> None:
    """``ValueError`` naming the model whose ``column`` (a ``*_true`` column) differs from the first owner's."""
    owners = [name for name, frame in aligned.items() if column in frame.columns]
    first = aligned[owners[0]][column]
    for name in owners[1:]:
        other = aligned[name][column]
        if column == "alloy_true":
            differs = ~((first.astype(str) == other.astype(str)) | (first.isna() & other.isna()))
        else:
            differs = ~np.isclose(first.to_numpy(float), other.to_numpy(float), equal_nan=True)
        if np.any(differs):
            raise ValueError(
                f"ensemble: model {name!r} has a different {column} than model {owners[0]!r} for image_id "
                f"{examples_text(first.index[np.asarray(differs)].to_series())}"
            )


def _regression_targets(aligned: dict[str, pd.DataFrame]) -> list[str]:
    targets: list[str] = []
    for frame in aligned.values():
        for column in frame.columns:
            target = str(column).removesuffix("_pred")
            if column.endswith("_pred") and target != "alloy" and target not in targets:
                targets.append(target)
    return targets


def regression_members(
    val_mae: Mapping[str, Mapping[str, float]], tolerance: float | None = 2.0
) -> dict[str, list[str]]:
    """Per regression target, the models whose validation MAE is at most ``tolerance`` x the best model's.

    Args:
        val_mae: ``{model: {target: validation MAE of the delivered weights}}`` (training summaries'
            ``val_mae``); a model without a finite value for a target is not judged on it.
        tolerance: None keeps every model.

    Returns:
        ``{target: [kept models]}`` for every target some model was judged on.
    """
    targets = sorted({target for errors in val_mae.values() for target in errors})
    kept: dict[str, list[str]] = {}
    for target in targets:
        judged = {m: float(e[target]) for m, e in val_mae.items() if target in e and np.isfinite(e[target])}
        best = min(judged.values())
        kept[target] = [m for m, error in judged.items() if tolerance is None or error <= tolerance * best]
        left_out = sorted(set(judged) - set(kept[target]))
        if left_out:
            logger.warning(
                "ensemble %s: left out %s (validation MAE %s, more than %.3g x the best %.4g)",
                target,
                left_out,
                [round(judged[m], 4) for m in left_out],
                tolerance,
                best,
            )
    return kept


def member_weights(models: Sequence[str], weights: Mapping[str, float] | None) -> np.ndarray:
    """The weights of ``models`` in their order, normalised to sum to 1 (None: equal weights).

    Raises:
        ValueError: a weight names a model that is not among ``models``, or is negative or not finite, or
            every weight is 0.
    """
    if weights is None:
        return np.full(len(models), 1.0 / len(models))
    unknown = sorted(set(weights) - set(models))
    if unknown:
        raise ValueError(f"ensemble weights: no predictions of model(s) {unknown} (models: {list(models)})")
    bad = {name: value for name, value in weights.items() if not (np.isfinite(value) and value >= 0)}
    if bad:
        raise ValueError(f"ensemble weights must be finite and non-negative: {bad}")
    values = np.array([float(weights.get(name, 0.0)) for name in models])
    if values.sum() <= 0:
        raise ValueError(f"ensemble weights: every weight is 0 ({dict(weights)})")
    return values / values.sum()


def ensemble_predictions(
    predictions: Mapping[str, pd.DataFrame],
    method: str = "soft",
    alloys: Sequence[str] = ALLOYS,
    regression: Mapping[str, Sequence[str]] | None = None,
    weights: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Combine several models' predictions tables (``{model name: DataFrame}``) by soft or hard voting.

    ``regression`` (``{target: models}``, from :func:`regression_members`) limits which models a regression
    target averages; a target it does not name, or whose models predicted none of it, averages every model.
    ``weights`` (``{model: weight}``, see :func:`member_weights`) weigh the probabilities and votes; None
    weighs every model equally. Regression targets are not weighted by them.
    Returns a predictions table in the same contract (rows in the first model's order). Raises
    ``ValueError`` naming the model when image sets, duplicated ids or true labels disagree.
    """
    if method not in METHODS:
        raise ValueError(f"ensemble: method {method!r} is not one of {list(METHODS)}")
    alloys = list(alloys)
    aligned = align_predictions(predictions, alloys)
    if len(aligned) == 1:
        logger.warning("ensemble of a single model: its predictions are returned unchanged in content")
    first = next(iter(aligned.values()))
    share = member_weights(list(aligned), weights)
    probs = np.stack([frame[prob_columns(alloys)].to_numpy(dtype=float) for frame in aligned.values()])
    mean_probs = probs.mean(axis=0) if weights is None else np.tensordot(share, probs, axes=1)
    if method == "soft":
        choice = mean_probs.argmax(axis=1)
    else:
        votes = np.stack([label_indices(frame["alloy_pred"], alloys) for frame in aligned.values()], axis=1)
        counts = np.stack([np.bincount(row, share, minlength=len(alloys)) for row in votes])
        tied = np.isclose(counts, counts.max(axis=1, keepdims=True), rtol=0, atol=1e-12)
        choice = np.where(tied, mean_probs, -np.inf).argmax(axis=1)

    check_same_truth(aligned, "alloy_true")
    result = pd.DataFrame({"image_id": first.index.to_numpy(), "alloy_true": first["alloy_true"].to_numpy()})
    result["alloy_pred"] = np.asarray(alloys, dtype=object)[choice]
    result[prob_columns(alloys)] = mean_probs
    for target in _regression_targets(aligned):
        owners = [frame for frame in aligned.values() if f"{target}_pred" in frame.columns]
        chosen = set((regression or {}).get(target, ()))
        members = [frame for name, frame in aligned.items() if name in chosen and f"{target}_pred" in frame]
        if any(f"{target}_true" in frame.columns for frame in owners):
            check_same_truth(aligned, f"{target}_true")
            truth = next(frame for frame in aligned.values() if f"{target}_true" in frame.columns)
            result[f"{target}_true"] = truth[f"{target}_true"].to_numpy(dtype=float)
        stacked = np.stack([frame[f"{target}_pred"].to_numpy(dtype=float) for frame in members or owners])
        result[f"{target}_pred"] = stacked.mean(axis=0)
    return result


def soft_vote(predictions: Mapping[str, pd.DataFrame], alloys: Sequence[str] = ALLOYS) -> pd.DataFrame:
    """Soft-voting ensemble: mean probabilities, predicted alloy = their argmax."""
    return ensemble_predictions(predictions, "soft", alloys)


def hard_vote(predictions: Mapping[str, pd.DataFrame], alloys: Sequence[str] = ALLOYS) -> pd.DataFrame:
    """Hard-voting ensemble: majority of predicted alloys, ties broken by the mean probability."""
    return ensemble_predictions(predictions, "hard", alloys)
