"""The physics unknown-designation score applied to a folder's predictions, beside the model's own score.

A model's unknown score (``ood_score``: Mahalanobis distance of its features) catches other materials and
blank or open-beam images, but few other aluminium designations: to the features they look like one of the
five. The physics score (:mod:`alloy_mtl.evaluation.physics_unknown`) needs a batch of images to fit the
instrument from, so folder inference applies it, not the served model (one image per request). An image above
either threshold is answered ``unknown``, each with its reason; so on known images the rejected share is up to
the sum of both rates.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.evaluation.physics_unknown import PhysicsUnknownScore
from alloy_mtl.physics.calibrated_generation import nominal_generation, recorded_config
from alloy_mtl.physics.simulator import SimulationConfig
from alloy_mtl.tracking.pyfunc_model import UNKNOWN

__all__ = ["DesignationScores", "mark_unknown_designations", "score_designations"]

logger = logging.getLogger(__name__)

ALLOY_COLUMN = "alloy"


@dataclasses.dataclass(frozen=True)
class DesignationScores:
    """Per usable file, the physics score (``scores``, in ``files`` order) and the ``threshold`` it is compared
    with; where the score was not applied, ``skipped`` says why (and ``scores`` is empty)."""

    files: Sequence[str] = ()
    scores: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))
    threshold: float = float("nan")
    reject_rate: float = float("nan")
    skipped: str = ""


def score_designations(
    score: PhysicsUnknownScore | str | None,
    images: np.ndarray,
    files: Sequence[str],
    model_metadata: Mapping[str, Any],
    *,
    generation: Mapping[str, Any] | None,
    reject_rate: float,
) -> DesignationScores:
    """Score a folder's prepared ``images`` (as the model takes them) with the physics score, at the instrument
    the model recorded (``model_metadata["instrument"]``), fitted per batch inside ``generation``'s declared
    tolerances. Not applied (``skipped``, logged) where the score is not fitted (None, or the reason it is
    not), the model records no simulated instrument (trained on a lab folder), the score was fitted for
    another beam or image size, or the folder has fewer than half a batch of usable images."""
    if not isinstance(score, PhysicsUnknownScore):
        return _skipped(
            score or "not fitted (run `kedro run --pipeline unknown_materials`; train_all runs it)"
        )
    if model_metadata.get("instrument") is None:
        return _skipped("the model records no simulated instrument (it was not trained on simulated images)")
    recorded = recorded_config(generation, model_metadata["instrument"], int(model_metadata["image_size"]))
    declared = SimulationConfig.from_params(nominal_generation(generation))
    config = dataclasses.replace(recorded, tolerances=declared.tolerances)
    mismatch = score.mismatch(config)
    if mismatch:
        return _skipped(f"fitted for another instrument ({mismatch})")
    fewest = score.batch_size // 2
    if len(images) < fewest:
        return _skipped(
            f"{len(images)} usable image(s), too few to fit the instrument from (at least {fewest})"
        )
    logger.info(
        "physics unknown-designation score: %d image(s), batches of %d", len(images), score.batch_size
    )
    return DesignationScores(
        files=list(files),
        scores=score.score(config, images),
        threshold=score.threshold(reject_rate),
        reject_rate=float(reject_rate),
    )


def _skipped(reason: str) -> DesignationScores:
    logger.warning("physics unknown-designation score not applied: %s", reason)
    return DesignationScores(skipped=reason)


def mark_unknown_designations(predictions: pd.DataFrame, checked: DesignationScores) -> pd.DataFrame:
    """``predictions`` (one row per file, ``file`` and the model's columns) with ``physics_unknown_score`` and
    ``physics_unknown_threshold`` (NaN where not applied or the file was not predicted); a row above the
    threshold is answered ``unknown`` with the reason added to ``unknown_reason``."""
    frame = predictions.copy()
    by_file = pd.Series(
        np.asarray(checked.scores, dtype=np.float64), index=list(checked.files), dtype=np.float64
    )
    scores = frame["file"].map(by_file).to_numpy(dtype=np.float64)
    frame["physics_unknown_score"] = scores
    frame["physics_unknown_threshold"] = np.where(np.isfinite(scores), checked.threshold, np.nan)
    above = np.isfinite(scores) & (scores > checked.threshold)
    if ALLOY_COLUMN in frame.columns and above.any():
        reasons = frame.get("unknown_reason", pd.Series("", index=frame.index)).fillna("").astype(str)
        added = [
            f"another aluminium designation by the physics fits: score {value:.4g} > {checked.threshold:.4g} "
            f"(reject_rate {checked.reject_rate:g})"
            for value in scores
        ]
        joined = [f"{old}; {new}" if old else new for old, new in zip(reasons, added, strict=True)]
        frame["unknown_reason"] = np.where(above, joined, reasons).astype(object)
        frame[ALLOY_COLUMN] = np.where(above, UNKNOWN, frame[ALLOY_COLUMN]).astype(object)
    last = [c for c in ("error",) if c in frame.columns]
    return frame[[*(c for c in frame.columns if c not in last), *last]]
