"""The images the promotion gate compares champion and challenger on, and the registered models' predictions.

The gate does not trust scores that two models got on their own data: it loads both registered versions
from the MLflow registry and has them predict the same images, those of the current run: the robustness
suite's unseen-detector and in-tolerance conditions (generated data; the conditions its summary score is taken
over), else the current data's test split (a lab's own data, where no suite runs). The images are built only
when a champion exists to compare with, once per gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion

from alloy_mtl.data.store import XrayData
from alloy_mtl.evaluation.paired_comparison import PairedComparison, paired_comparison
from alloy_mtl.evaluation.robustness import SUMMARISED_KINDS, ConditionImages, by_condition
from alloy_mtl.mtl.labelled_prediction import predict_images
from alloy_mtl.tracking.promotion import Comparer

logger = logging.getLogger(__name__)

REUSE_CHECK_ROWS = 32
"""Images per condition a registered model re-predicts before its run's predictions of them are reused."""

REUSE_TOLERANCE = 1e-4
"""The largest difference in any probability or regression output for which those predictions are its."""

TEST_SPLIT = "test_split"
"""The one condition of a gate without the robustness suite: the current data's test split."""


def gate_conditions(
    conditions: ConditionImages, kinds: Mapping[str, str], model_input: XrayData | None
) -> ConditionImages:
    """The suite's conditions of the summarised kinds (unseen detector, in tolerance), else the test split of
    ``model_input``.

    Raises:
        ValueError: neither suite conditions nor a test split with images.
    """
    gated = {name: pair for name, pair in conditions.items() if kinds.get(name) in SUMMARISED_KINDS}
    if gated:
        return gated
    if model_input is None or "split" not in model_input.metadata:
        raise ValueError("the gate has no images to compare on: no robustness suite and no split model input")
    rows = np.flatnonzero(model_input.metadata["split"].astype(str).to_numpy() == "test")
    if rows.size == 0:
        raise ValueError("the gate has no images to compare on: the model input's test split is empty")
    images = np.asarray(model_input.images[rows], dtype=np.float32)
    return {TEST_SPLIT: (images, model_input.metadata.iloc[rows].reset_index(drop=True))}


def registered_bundle(model_name: str, version: ModelVersion) -> dict[str, Any]:
    """The trained bundle inside a registered version's pyfunc model (read from the tracking server)."""
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    return model.unwrap_python_model().bundle


def condition_predictions(
    bundle: Mapping[str, Any],
    conditions: ConditionImages,
    instruments: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, pd.DataFrame]:
    """A bundle's predictions of every condition (an instrument-conditioned model is told each condition's
    fitted instrument, as in the robustness suite; a test split's rows carry their own)."""
    instruments = instruments or {}
    return {
        name: predict_images(bundle, images, metadata, instrument=instruments.get(name))
        for name, (images, metadata) in conditions.items()
    }


def sample_rows(n: int, size: int = REUSE_CHECK_ROWS) -> np.ndarray:
    """Evenly spaced rows of a condition that a registered model re-predicts before its run's predictions
    are reused."""
    return np.unique(np.linspace(0, n - 1, num=min(n, size)).round().astype(int)) if n else np.arange(0)


def reusable_predictions(
    bundle: Mapping[str, Any],
    conditions: ConditionImages,
    stacked: pd.DataFrame,
    instruments: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, pd.DataFrame] | None:
    """A run's suite predictions (stacked, ``condition`` column) of ``conditions``, if the registered
    ``bundle`` predicts them: it re-predicts :func:`sample_rows` of every condition, which must match in image
    ids and within :data:`REUSE_TOLERANCE` in every probability and regression output. None otherwise (the
    caller then predicts every image)."""
    instruments = instruments or {}
    frames = by_condition(stacked)
    reused = {}
    for name, (images, metadata) in conditions.items():
        frame = frames.get(name)
        if frame is None or list(frame["image_id"].astype(str)) != list(metadata["image_id"].astype(str)):
            logger.info("gate: the run's predictions of %s do not cover its images; predicting them", name)
            return None
        rows = sample_rows(len(frame))
        again = predict_images(
            bundle, images[rows], metadata.iloc[rows].reset_index(drop=True), instrument=instruments.get(name)
        )
        columns = [
            c for c in again.columns if c.startswith("prob_") or (c.endswith("_pred") and c != "alloy_pred")
        ]
        expected = frame.iloc[rows].reset_index(drop=True)
        gap = float(np.max(np.abs(again[columns].to_numpy(float) - expected[columns].to_numpy(float))))
        if not gap <= REUSE_TOLERANCE:
            logger.warning(
                "gate: the registered challenger predicts %s differently from the run's predictions (largest "
                "difference %.3g); predicting every image with the registered model",
                name,
                gap,
            )
            return None
        reused[name] = frame
    return reused


def comparer(
    model_name: str,
    conditions: Callable[[], ConditionImages],
    instruments: Mapping[str, Mapping[str, float]] | None,
    *,
    n_resamples: int,
    seed: int,
    level: float,
    load: Callable[[str, ModelVersion], Mapping[str, Any]] = registered_bundle,
    known: Mapping[str, pd.DataFrame] | None = None,
) -> Comparer:
    """The gate's comparison: both registered versions predict ``conditions()`` (built on the first call).

    ``known`` holds the current run's suite predictions by the MLflow run of each model: a version registered
    from one of those runs reuses them where :func:`reusable_predictions` confirms them (it re-predicts a
    sample), instead of predicting every image again.
    """
    cache: dict[str, ConditionImages] = {}
    known = known or {}

    def predictions_of(version: ModelVersion, images: ConditionImages) -> dict[str, pd.DataFrame]:
        bundle = load(model_name, version)
        if version.run_id in known:
            reused = reusable_predictions(bundle, images, known[version.run_id], instruments)
            if reused is not None:
                logger.info(
                    "gate: version %s reuses its run's predictions (a sample re-predicted)", version.version
                )
                return reused
        return condition_predictions(bundle, images, instruments)

    def compare(challenger: ModelVersion, champion: ModelVersion) -> PairedComparison:
        if "images" not in cache:
            cache["images"] = conditions()
        images = cache["images"]
        logger.info(
            "gate: version %s against champion version %s on %d images of %s",
            challenger.version,
            champion.version,
            sum(len(meta) for _, meta in images.values()),
            ", ".join(images),
        )
        predictions = [predictions_of(version, images) for version in (challenger, champion)]
        return paired_comparison(*predictions, n_resamples=n_resamples, seed=seed, level=level)

    return compare
