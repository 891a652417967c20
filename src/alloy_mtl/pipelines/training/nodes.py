"""Node of the training pipeline: parse the shared and per-architecture parameters once, then train."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.config import parse_params
from alloy_mtl.data.params import DataSourceParams
from alloy_mtl.data.store import XrayData
from alloy_mtl.evaluation.evaluation_set import simulate_conformal_set
from alloy_mtl.mtl.params import TrainingParams, parse_training_params
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.tracking.callback import training_callbacks
from alloy_mtl.tuning.best import start_from_best

logger = logging.getLogger(__name__)


def conformal_set(
    params: TrainingParams, data_kind: str, generation: dict[str, Any], images_shape: tuple[int, ...]
) -> tuple[TrainingParams, tuple[np.ndarray, pd.DataFrame] | None]:
    """``params`` with ``conformal_set: auto`` resolved, and the generated conformal set it names (None: the
    validation split). ``auto`` is ``generated`` with generated data whose channels and targets the simulation
    has, else ``validation_split``.

    Raises:
        ValueError: ``generated*`` named, but the simulation makes images of other channels than the training
            images or lacks a task's target.
    """
    choice = params.conformal_set
    if choice == "validation_split" or params.conformal_coverage is None:
        return params, None
    if choice == "auto" and data_kind != "generated":
        return params.model_copy(update={"conformal_set": "validation_split"}), None
    images, metadata = simulate_conformal_set(
        generation, params.conformal_images, tolerances=choice == "generated_tolerances"
    )
    problems = [
        f"the simulation makes {images.shape[1]} channels (generation.kv), the training images have "
        f"{images_shape[1]}"
    ] * (images.shape[1] != images_shape[1])
    problems += [
        f"the simulation has no target {t.target!r}" for t in params.task_specs if t.target not in metadata
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
        "%s: conformal sets fitted on %d generated images (%s)",
        params.arch,
        len(images),
        "settings inside the tolerances"
        if choice == "generated_tolerances"
        else "the generation's instrument",
    )
    return params, (images, metadata)


def train_architecture(
    model_input: XrayData,
    training: dict[str, Any],
    train_options: dict[str, Any],
    data_source: dict[str, Any],
    generation: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Train one architecture's multi-task model and predict the test split.

    Args:
        model_input: the consolidated images with split-labelled metadata.
        training: parameters every architecture shares (``params:training``).
        train_options: this architecture's overrides (``params:<arch>.train_options``; must name ``arch``).
        data_source: where the images came from (``params:data_source``; ``conformal_set: auto`` reads it).
        generation: the simulation (``params:generation``): the generated conformal set's instrument.

    Returns:
        Model bundle (best weights + rebuild recipe), per-epoch history, test predictions, and a run summary
        holding the resolved parameters. Checkpoints for resuming go to
        ``<checkpoint_root>/<arch>/checkpoints``.

    Raises:
        alloy_mtl.config.ParameterError: unknown keys or bad values, named by their YAML path, before any work.
        alloy_mtl.tuning.best.MissingBestConfigError: ``start_from_pbt`` is on and ``tune_<arch>`` has not
            written ``<checkpoint_root>/<arch>/pbt_best.yml``.
    """
    params = parse_training_params(training, train_options, arch=str(train_options.get("arch", "")))
    params = start_from_best(params)  # start_from_pbt: optimizer, lr, weight decay from pbt_best.yml
    kind = parse_params(DataSourceParams, data_source, "data_source").kind
    params, conformal = conformal_set(params, kind, generation, model_input.images.shape)
    checkpoint_dir = Path(params.checkpoint_root) / params.arch / "checkpoints"
    callbacks = training_callbacks(params.arch)  # per-epoch MLflow metrics when a run is tracked
    result = train_from_params(
        model_input.images, model_input.metadata, params, checkpoint_dir, callbacks, conformal_data=conformal
    )
    return (
        result.bundle,
        result.history,
        result.predictions,
        {**result.summary, "params": params.model_dump(mode="json")},
    )
