"""The physics unknown-designation score measured on the evaluation's own sets, and what a model answers with it.

Folder inference answers ``unknown`` where the model's own score *or* the physics score
(:mod:`alloy_mtl.evaluation.physics_unknown`) is above its threshold. The evaluation measures the same: the
generated unknown-material set (:func:`alloy_mtl.evaluation.ood.simulate_ood_set`) is mixed into the evaluation
set's known images in one shuffled stream, the images the input guards refuse are set aside (inference never
scores them: they are refused), and the rest is scored as inference scores a folder (the instrument fitted per
batch, unknown plates inside the batches). :func:`physics_ood_report` gives the score's AUROC per family like a
model's; :func:`with_physics` the shares a model answers ``unknown`` with it, known images included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.evaluation.evaluation_set import evaluation_set_config, simulate_evaluation_set
from alloy_mtl.evaluation.ood import model_ood_report, simulate_ood_set
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.physics_unknown import PhysicsUnknownScore
from alloy_mtl.mtl.loading.input_guards import refused_images
from alloy_mtl.physics.simulator import SimulationConfig

__all__ = ["PHYSICS_COLUMNS", "physics_ood_report", "score_evaluation_sets", "with_physics"]

PHYSICS_COLUMNS = ("image_id", "specimen_id", "set", "material", "family", "physics_unknown_score")
"""Columns of :func:`score_evaluation_sets` (plus ``physics_unknown_threshold``)."""


def score_evaluation_sets(
    score: PhysicsUnknownScore,
    generation: Mapping[str, Any] | None,
    settings: EvaluationParams,
    reject_rate: float,
    seed: int = 0,
) -> pd.DataFrame:
    """Physics unknown scores of the evaluation set (``set`` = ``evaluation_set``, ``family`` = ``known``) and the
    unknown-material set (``set`` = ``ood``), one row per image with the ids the models' predictions carry;
    refused images score ``inf``. The stream order is drawn with ``seed``; ``physics_unknown_threshold`` is the
    threshold for ``reject_rate``. Raises ValueError when the score was fitted for another beam or image size."""
    declared = SimulationConfig.from_params(generation)
    mismatch = score.mismatch(declared)
    if mismatch is not None:
        raise ValueError(f"physics unknown score: {mismatch}")
    known, known_meta = simulate_evaluation_set(generation, settings.evaluation_set)
    config = evaluation_set_config(generation, settings.evaluation_set)
    unknown, unknown_meta = simulate_ood_set(config, settings.ood.images_per_material)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "image_id": known_meta["image_id"].astype(str).to_numpy(),
                    "specimen_id": known_meta["specimen_id"].astype(str).to_numpy(),
                    "set": "evaluation_set",
                    "material": known_meta["alloy"].astype(str).to_numpy(),
                    "family": "known",
                }
            ),
            unknown_meta[["image_id", "specimen_id", "material", "family"]].assign(set="ood"),
        ],
        ignore_index=True,
    )[list(PHYSICS_COLUMNS[:-1])]
    images = np.concatenate([known, unknown])
    usable = np.flatnonzero(~refused_images(images))
    order = usable[np.random.default_rng(seed).permutation(len(usable))]
    scores = np.full(len(images), np.inf)
    scores[order] = score.score(declared, images[order])
    return frame.assign(physics_unknown_score=scores, physics_unknown_threshold=score.threshold(reject_rate))


def _as_model_scores(physics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores = physics.rename(
        columns={"physics_unknown_score": "ood_score", "physics_unknown_threshold": "ood_threshold"}
    )
    return scores[scores["set"] == "evaluation_set"], scores[scores["set"] == "ood"]


def physics_ood_report(physics: pd.DataFrame, n_resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """The physics score's OOD metrics per family (:func:`alloy_mtl.evaluation.ood.model_ood_report`: AUROC with
    a specimen-bootstrap interval, FPR at 95 % TPR, shares answered unknown at its threshold) from
    :func:`score_evaluation_sets`'s table; empty when the table is."""
    if physics.empty:
        return {}
    known, unknown = _as_model_scores(physics)
    return model_ood_report(known, unknown, n_resamples=n_resamples, seed=seed)


def with_physics(
    known_predictions: pd.DataFrame, ood_predictions: pd.DataFrame, physics: pd.DataFrame
) -> dict[str, Any]:
    """What a model answers with the physics score beside it, as folder inference does: ``unknown`` where its
    own score (``ood_score``; refused: ``inf``) is above its served threshold (``ood_predictions``'
    ``ood_threshold``) or the physics score above its own. Returns the known images withheld
    (``known_rejected``; by the physics score alone: ``physics_known_rejected``) and per family the share
    answered unknown (``families.<f>.unknown_rejected``); empty when the model has no fitted score or the tables
    do not share the images."""
    if (
        physics.empty
        or not {"image_id", "ood_score"} <= set(known_predictions)
        or not {"image_id", "ood_score", "ood_threshold", "family"} <= set(ood_predictions)
        or ood_predictions.empty
    ):
        return {}
    threshold = float(ood_predictions["ood_threshold"].iloc[0])
    physics_flag = pd.Series(
        (physics["physics_unknown_score"] > physics["physics_unknown_threshold"]).to_numpy(),
        index=physics["image_id"].astype(str).to_numpy(),
    )

    def flags(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
        ids = predictions["image_id"].astype(str)
        if not ids.isin(physics_flag.index).all():
            return None
        own = (predictions["ood_score"] > threshold).to_numpy()
        return own | physics_flag.loc[ids].to_numpy(), physics_flag.loc[ids].to_numpy()

    known, unknown = flags(known_predictions), flags(ood_predictions)
    if known is None or unknown is None or not np.isfinite(known_predictions["ood_score"]).any():
        return {}
    families = ood_predictions["family"].astype(str).to_numpy()
    return {
        "known_rejected": float(known[0].mean()),
        "physics_known_rejected": float(known[1].mean()),
        "families": {
            family: {"unknown_rejected": float(unknown[0][families == family].mean())}
            for family in dict.fromkeys(families)
        },
    }
