"""Node of the training pipeline: parse the shared and per-architecture parameters once, then train."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from alloy_mtl.config import parse_params
from alloy_mtl.data.params import DataSourceParams
from alloy_mtl.data.store import XrayData
from alloy_mtl.evaluation.conformal_set import conformal_set
from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.tracking.callback import training_callbacks
from alloy_mtl.tuning.best import start_from_best

logger = logging.getLogger(__name__)


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
