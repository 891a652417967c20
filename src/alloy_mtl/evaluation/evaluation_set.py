"""The large simulated evaluation set: fresh specimens, balanced across alloys, same physics as the training data.

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

from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset


def evaluation_set_config(
    generation: Mapping[str, Any] | None, params: EvaluationSetParams
) -> SimulationConfig:
    """The training data's simulator settings with a seed of its own, balanced classes and ``n_images``.

    New specimens and exposures, the same detector: the fixed pattern (per-pixel gain and offset, dead
    pixels) is the training data's, as it is for a lab's next batch on its own instrument.
    """
    base = SimulationConfig.from_params(generation)
    return dataclasses.replace(
        base,
        seed=base.seed + params.seed_offset,
        detector_seed=base.detector_unit,
        n_images=params.n_images,
        imbalance_ratio=1.0,
        images_per_specimen=params.images_per_specimen,
        min_images_per_class=params.images_per_specimen,
    )


def simulate_evaluation_set(
    generation: Mapping[str, Any] | None, params: EvaluationSetParams
) -> tuple[np.ndarray, pd.DataFrame]:
    """(images float32 (N, C, H, W), metadata with ``specimen_id``) of the evaluation set."""
    images, metadata = simulate_dataset(evaluation_set_config(generation, params))
    metadata["specimen_id"] = "eval-" + metadata["specimen_id"].astype(str)
    return images, metadata
