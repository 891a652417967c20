"""The large simulated evaluation set: fresh specimens, balanced across alloys, a detector training never saw.

The split's test set holds a few specimens of each tail alloy, so one image moves a per-alloy AP by 0.1;
thousands of images of new specimens rank models. The set is re-simulated wherever it is needed (it is
deterministic and renders at thousands of images per second), so no step has to ship it to another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.constants import INSTRUMENT_COLUMN_PREFIX
from alloy_mtl.evaluation.params import (
    VALIDATION_DETECTOR_SEEDS,
    EnsembleSelectionParams,
    EvaluationSetParams,
)
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset


def evaluation_set_config(
    generation: Mapping[str, Any] | None, params: EvaluationSetParams
) -> SimulationConfig:
    """The training data's simulator settings with a seed of its own, balanced classes and ``n_images``.

    New specimens and exposures at the nominal instrument (no unit pool, no tolerances), imaged by the
    detector unit ``params.detector_seed`` (None: the training data's unit 0, as for a lab's next batch on the
    instrument that recorded its training data).

    Raises:
        ValueError: ``params.detector_seed`` names the training data's detector unit.
    """
    base = SimulationConfig.from_params(generation)
    if params.detector_seed is not None and params.detector_seed == base.detector_unit:
        raise ValueError(
            f"evaluation.evaluation_set.detector_seed: {params.detector_seed} is the training data's detector "
            "unit (generation.detector_seed, else generation.seed); set another seed, or null for the "
            "training data's unit on purpose"
        )
    return dataclasses.replace(
        base,
        seed=base.seed + params.seed_offset,
        detector_seed=base.detector_unit if params.detector_seed is None else params.detector_seed,
        instruments=1,
        tolerances=(),
        randomise=None,
        n_images=params.n_images,
        imbalance_ratio=1.0,
        images_per_specimen=params.images_per_specimen,
        min_images_per_class=params.images_per_specimen,
    )


def simulate_evaluation_set(
    generation: Mapping[str, Any] | None, params: EvaluationSetParams
) -> tuple[np.ndarray, pd.DataFrame]:
    """(images float32 (N, C, H, W), metadata with ``specimen_id``) of the evaluation set.

    The metadata does not record the instrument: like a lab's, this instrument is unknown to the models
    (an instrument-conditioned model is told the one :func:`batch_instrument` fits from the images).
    """
    images, metadata = _simulate(evaluation_set_config(generation, params), "eval-")
    return images, without_instrument(metadata)


def without_instrument(metadata: pd.DataFrame) -> pd.DataFrame:
    """``metadata`` without the recorded instrument settings (its ``instrument_<setting>`` columns)."""
    return metadata.drop(columns=[c for c in metadata.columns if c.startswith(INSTRUMENT_COLUMN_PREFIX)])


def batch_instrument(generation: Mapping[str, Any] | None, images: np.ndarray) -> dict[str, float]:
    """The instrument shared by ``images``, fitted by the physics-limit estimator from the images alone (no
    labels) inside the declared ``generation.tolerances``; the nominal instrument where none are declared."""
    return PhysicsLimitEstimator.within_declared(SimulationConfig.from_params(generation)).fit_instrument(
        images
    )


def validation_set_config(
    generation: Mapping[str, Any] | None, params: EnsembleSelectionParams
) -> SimulationConfig:
    """The generated validation set the ensemble's weights are chosen on: fresh, balanced specimens (a seed of
    their own) imaged by ``params.units`` validation detector units at settings drawn inside the declared
    tolerances (``generation.tolerances``, every one of them, whatever ``generation.randomise`` says)."""
    base = SimulationConfig.from_params(generation)
    return dataclasses.replace(
        base,
        seed=base.seed + params.seed_offset,
        detector_seed=VALIDATION_DETECTOR_SEEDS[0],
        instruments=params.units,
        randomise=None,
        n_images=params.n_images,
        imbalance_ratio=1.0,
        images_per_specimen=EvaluationSetParams().images_per_specimen,
        min_images_per_class=EvaluationSetParams().images_per_specimen,
    )


def simulate_validation_set(
    generation: Mapping[str, Any] | None, params: EnsembleSelectionParams
) -> tuple[np.ndarray, pd.DataFrame]:
    """(images, metadata) of the generated validation set (:func:`validation_set_config`)."""
    return _simulate(validation_set_config(generation, params), "val-")


CONFORMAL_SEED_OFFSET = 4_000_037
"""Added to the generation seed for the conformal set's specimens (none of the validation or evaluation set's)."""
CONFORMAL_UNITS = 16
"""Validation detector units imaging the conformal set, one per specimen."""


def conformal_set_config(
    generation: Mapping[str, Any] | None, n_images: int, *, tolerances: bool = False
) -> SimulationConfig:
    """The generated set a model's conformal sets and intervals are fitted on: ``n_images`` fresh, balanced
    specimens imaged by ``CONFORMAL_UNITS`` validation detector units (from ``VALIDATION_DETECTOR_SEEDS[1]``,
    none of the suite's or the evaluation set's) at the instrument ``generation`` describes (nominal, or
    calibrated to a lab), or with ``tolerances`` at settings drawn inside the declared tolerances."""
    base = SimulationConfig.from_params(generation)
    return dataclasses.replace(
        base,
        seed=base.seed + CONFORMAL_SEED_OFFSET,
        detector_seed=VALIDATION_DETECTOR_SEEDS[1],
        instruments=CONFORMAL_UNITS,
        tolerances=base.tolerances if tolerances else (),
        randomise=None,
        n_images=n_images,
        imbalance_ratio=1.0,
        images_per_specimen=EvaluationSetParams().images_per_specimen,
        min_images_per_class=EvaluationSetParams().images_per_specimen,
    )


def simulate_conformal_set(
    generation: Mapping[str, Any] | None, n_images: int, *, tolerances: bool = False
) -> tuple[np.ndarray, pd.DataFrame]:
    """(images, metadata) of the conformal set (:func:`conformal_set_config`); the metadata records the
    instrument of every image, which an instrument-conditioned model is told."""
    return _simulate(conformal_set_config(generation, n_images, tolerances=tolerances), "conf-")


def _simulate(config: SimulationConfig, prefix: str) -> tuple[np.ndarray, pd.DataFrame]:
    """The images and metadata of ``config``, specimen ids prefixed (never equal to a training specimen's)."""
    images, metadata = simulate_dataset(config)
    metadata["specimen_id"] = prefix + metadata["specimen_id"].astype(str)
    return images, metadata
