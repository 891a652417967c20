"""What a trained model's conformal sets are fitted on (``training.conformal_set``): a generated, balanced set at
the instrument the simulation describes, or the validation split."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.constants import METADATA_COLUMNS
from alloy_mtl.evaluation.evaluation_set import conformal_set_config, simulate_conformal_set
from alloy_mtl.mtl.params import TrainingParams

__all__ = ["conformal_set"]

logger = logging.getLogger(__name__)


def conformal_set(
    params: TrainingParams, data_kind: str, generation: dict[str, Any], images_shape: tuple[int, ...]
) -> tuple[TrainingParams, Callable[[], tuple[np.ndarray, pd.DataFrame]] | None]:
    """``params`` with ``conformal_set: auto`` resolved, and a function simulating the generated conformal set it
    names (None: the validation split), called once training is done so that the images are not held through it.
    ``auto`` is ``generated`` with generated data whose channels and targets the simulation has, else
    ``validation_split``.

    Raises:
        ValueError: ``generated*`` named, but the simulation makes images of other channels than the training
            images or lacks a task's target (its metadata holds ``METADATA_COLUMNS``).
    """
    choice = params.conformal_set
    if choice == "validation_split" or params.conformal_coverage is None:
        return params, None
    if choice == "auto" and data_kind != "generated":
        return params.model_copy(update={"conformal_set": "validation_split"}), None
    tolerances = choice == "generated_tolerances"
    channels = len(conformal_set_config(generation, params.conformal_images, tolerances=tolerances).kv)
    problems = []
    if channels != images_shape[1]:
        problems.append(
            f"the simulation makes {channels} channels (generation.kv), the training images have {images_shape[1]}"
        )
    problems += [
        f"the simulation has no target {t.target!r}"
        for t in params.task_specs
        if t.target not in METADATA_COLUMNS
    ]
    if problems and choice == "auto":
        logger.warning(
            "%s: conformal sets fitted on the validation split: %s", params.arch, "; ".join(problems)
        )
        return params.model_copy(update={"conformal_set": "validation_split"}), None
    if problems:
        raise ValueError(
            f"training.conformal_set: {choice}: " + "; ".join(problems) + ". Set generation to the lab's "
            "instrument, or conformal_set: validation_split"
        )
    params = params.model_copy(update={"conformal_set": "generated" if choice == "auto" else choice})
    logger.info(
        "%s: conformal sets to be fitted on %d generated images (%s)",
        params.arch,
        params.conformal_images,
        "settings inside the tolerances" if tolerances else "the generation's instrument",
    )
    return params, partial(simulate_conformal_set, generation, params.conformal_images, tolerances=tolerances)
