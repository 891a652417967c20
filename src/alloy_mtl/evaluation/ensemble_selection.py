"""Members and weights of the ``ensemble_selected`` row, chosen on the validation split only.

An equal-weight soft vote over every model lets weak members drag the mean below the best model. Here the
weights are fitted to each model's predictions of the *validation* split, then applied unchanged to the test
split, the evaluation set and every robustness condition (:func:`alloy_mtl.evaluation.ensemble.ensemble_predictions`
with ``weights``). Methods (``EnsembleSelectionParams.method``):

* ``greedy`` (default): forward selection with replacement (Caruana et al., "Ensemble selection from
  libraries of models", ICML 2004) on validation macro AP, started from the best single model ("sorted
  initialisation"); ties between candidates are broken by the lower validation log loss. Of the ``rounds``
  ensembles built, the best-scoring one is kept (the earliest, hence the smallest, on a tie), so the chosen
  ensemble's validation score is never below its best member's. A model drawn k times of n weighs k/n.
* ``loglik``: the non-negative weights summing to 1 that maximise the validation log-likelihood of the
  mixture sum_m w_m p_m(y); the problem is concave, solved by the EM fixed point
  w_m <- w_m * mean_i(p_m(y_i) / sum_k w_k p_k(y_i)). Every model usually keeps some weight.
* ``equal``: every model 1/n (the plain soft ensemble).

The result is a JSON-able record (method, weights of every model, members, validation scores of each model,
of the equal-weight and of the chosen ensemble); :func:`selected_weights` reads the weights back and checks
that they were chosen over the models being combined.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from alloy_mtl.config.base import parse_params
from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.classification import label_indices, prob_columns
from alloy_mtl.evaluation.ensemble import align_predictions, check_same_truth
from alloy_mtl.evaluation.params import EnsembleSelectionParams

logger = logging.getLogger(__name__)

SPLIT = "val"
PROB_FLOOR = 1e-12
"""Probabilities are floored here before logs and ratios (a model may give a true class exactly 0)."""
LOGLIK_MAX_ITER = 5000
LOGLIK_TOLERANCE = 1e-10
AP_DECIMALS = 12
"""Validation macro APs equal to this many decimals count as a tie (summation order differs by ~1e-16)."""


def macro_ap(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest average precision over the classes present in ``y_true`` (as ``classification_metrics``)."""
    present = [k for k in range(probs.shape[1]) if np.any(y_true == k)]
    return float(np.mean([average_precision_score(y_true == k, probs[:, k]) for k in present]))


def log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log probability of the true class (probabilities floored at ``PROB_FLOOR``)."""
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y_true)), y_true], PROB_FLOOR))))


def _score(y_true: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """Sort key of the greedy search: higher macro AP first, then lower log loss."""
    return round(macro_ap(y_true, probs), AP_DECIMALS), -log_loss(y_true, probs)


def greedy_weights(
    probs: Mapping[str, np.ndarray], y_true: np.ndarray, rounds: int
) -> tuple[dict[str, float], list[str]]:
    """Forward selection with replacement on validation macro AP (module docstring).

    Args:
        probs: ``{model: (n_images, n_classes) probabilities}``, rows aligned, in a fixed model order (ties
            between equally good candidates go to the earlier model, so the result is deterministic).
        y_true: class index of each row.
        rounds: how many models are drawn at most (the first is the best single model).

    Returns:
        ``({model: weight}`` for every model, weights summing to 1, ``the models in the order drawn)``.
    """
    names = list(probs)
    total = np.zeros_like(next(iter(probs.values())), dtype=float)
    path: list[str] = []
    best_score, best_length = None, 0
    for _ in range(rounds):
        n = len(path) + 1
        scores = {name: _score(y_true, (total + probs[name]) / n) for name in names}
        pick = max(names, key=lambda name: scores[name])  # max keeps the first of equal keys
        total += probs[pick]
        path.append(pick)
        if best_score is None or scores[pick] > best_score:
            best_score, best_length = scores[pick], n
    chosen = path[:best_length]
    return {name: chosen.count(name) / best_length for name in names}, path


def loglik_weights(probs: Mapping[str, np.ndarray], y_true: np.ndarray) -> dict[str, float]:
    """Non-negative weights summing to 1 that maximise the validation log-likelihood of the mixture (EM)."""
    names = list(probs)
    rows = np.arange(len(y_true))
    likelihood = np.stack([np.maximum(probs[name][rows, y_true], PROB_FLOOR) for name in names])
    weights = np.full(len(names), 1.0 / len(names))
    for _ in range(LOGLIK_MAX_ITER):
        updated = weights * (likelihood / (weights @ likelihood)).mean(axis=1)
        updated /= updated.sum()
        converged = np.max(np.abs(updated - weights)) < LOGLIK_TOLERANCE
        weights = updated
        if converged:
            break
    else:
        logger.warning("ensemble selection (loglik): EM did not converge in %d iterations", LOGLIK_MAX_ITER)
    return dict(zip(names, weights.tolist(), strict=True))


def _validation_arrays(
    validation: Mapping[str, pd.DataFrame | None], alloys: Sequence[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    missing = [name for name, frame in validation.items() if frame is None or frame.empty]
    if missing:
        raise ValueError(
            f"ensemble selection: no validation ({SPLIT} split) predictions of model(s) {missing}; every "
            "model must predict the validation split before the ensemble's weights can be chosen"
        )
    aligned = align_predictions(validation, alloys)  # same images, same labels: errors name the model
    check_same_truth(aligned, "alloy_true")
    first = next(iter(aligned.values()))
    labelled = first["alloy_true"].notna().to_numpy()
    if not labelled.any():
        raise ValueError(f"ensemble selection: no validation ({SPLIT} split) image has an alloy_true label")
    y_true = label_indices(first["alloy_true"][labelled], alloys)
    probs = {
        name: frame[prob_columns(alloys)].to_numpy(dtype=float)[labelled] for name, frame in aligned.items()
    }
    return probs, y_true


def select_ensemble(
    validation: Mapping[str, pd.DataFrame | None],
    params: EnsembleSelectionParams | Mapping[str, Any] | None = None,
    alloys: Sequence[str] = ALLOYS,
) -> dict[str, Any]:
    """Choose the ensemble's weights on every model's validation predictions (``{model: table}``).

    Returns:
        The selection record: ``method``, ``split``, ``n_images``, ``weights`` (every model, in the given
        order, non-negative, summing to 1), ``members`` (the models with a positive weight), ``validation``
        (``macro_ap`` and ``log_loss`` of each model, ``ensemble_soft`` and ``ensemble_selected``) and, for
        ``greedy``, ``rounds`` and ``path`` (the models in the order drawn).

    Raises:
        ValueError: a model has no (or an empty) validation table, the tables cover different images, or no
            validation image is labelled; the message names the model.
    """
    settings = parse_params(EnsembleSelectionParams, params or {}, "evaluation.ensemble_selection")
    if not validation:
        raise ValueError("ensemble selection: no models given")
    alloys = list(alloys)
    probs, y_true = _validation_arrays(validation, alloys)
    names = list(probs)
    sets = {
        str(value)
        for frame in validation.values()
        if frame is not None and "selection_set" in frame
        for value in frame["selection_set"].unique()
    }
    if len(sets) > 1:
        raise ValueError(f"ensemble selection: the models predicted different validation sets {sorted(sets)}")
    record: dict[str, Any] = {"method": settings.method, "split": sets.pop() if sets else SPLIT}
    record["n_images"] = len(y_true)
    if settings.method == "greedy":
        weights, path = greedy_weights(probs, y_true, settings.rounds)
        record |= {"rounds": settings.rounds, "path": path}
    elif settings.method == "loglik":
        weights = loglik_weights(probs, y_true)
    else:
        weights = {name: 1.0 / len(names) for name in names}
    record["weights"] = weights
    record["members"] = [name for name in names if weights[name] > 0]

    def mixture(share: Mapping[str, float]) -> np.ndarray:
        return sum(share[name] * probs[name] for name in names)

    ensembles = {"ensemble_soft": {name: 1.0 / len(names) for name in names}, "ensemble_selected": weights}
    tables = {**probs, **{row: mixture(share) for row, share in ensembles.items()}}
    record["validation"] = {
        "macro_ap": {row: macro_ap(y_true, table) for row, table in tables.items()},
        "log_loss": {row: log_loss(y_true, table) for row, table in tables.items()},
    }
    logger.info(
        "ensemble selection (%s, %d validation images): %s; validation macro AP %.4f (equal weights %.4f)",
        settings.method,
        len(y_true),
        describe_weights(weights),
        record["validation"]["macro_ap"]["ensemble_selected"],
        record["validation"]["macro_ap"]["ensemble_soft"],
    )
    return record


def describe_weights(weights: Mapping[str, float]) -> str:
    """``"fnn 0.60, resnet18 0.40"``: the members with a positive weight, heaviest first."""
    members = sorted(((w, name) for name, w in weights.items() if w > 0), key=lambda item: -item[0])
    return ", ".join(f"{name} {w:.2f}" for w, name in members)


def selected_weights(selection: Mapping[str, Any], models: Sequence[str]) -> dict[str, float]:
    """The chosen weights of ``models`` from a selection record, checked against the models combined.

    Raises:
        ValueError: the record has no weights, or they were chosen over another set of models (a model
            without a weight, or a weighted model that is not combined); the message names the models.
    """
    weights = selection.get("weights") if isinstance(selection, Mapping) else None
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError("ensemble selection: the record has no 'weights'; run the evaluation pipeline")
    unweighted = [name for name in models if name not in weights]
    absent = [name for name in weights if name not in models]
    if unweighted or absent:
        raise ValueError(
            f"ensemble selection: weights were chosen over models {list(weights)}, but models {list(models)} "
            f"are combined (no weight: {unweighted}; no predictions: {absent}); run the evaluation pipeline "
            "again to choose them over these models"
        )
    return {name: float(weights[name]) for name in models}
