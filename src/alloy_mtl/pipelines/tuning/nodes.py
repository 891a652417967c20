"""Node of the tuning pipeline: parse the parameters, run PBT, hand back the best configuration and plot."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from alloy_mtl.config import parse_params
from alloy_mtl.data.store import XrayData
from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.tracking.pbt import log_population
from alloy_mtl.tuning.params import TuningParams
from alloy_mtl.tuning.plot import population_progress
from alloy_mtl.tuning.population import run_pbt, trial_params

logger = logging.getLogger(__name__)


def tune_architecture(
    model_input: XrayData, training: dict[str, Any], train_options: dict[str, Any], tuning: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, Figure]:
    """Population Based Training of one architecture's optimizer, lr and weight decay.

    Returns:
        The best configuration with its lineage (``pbt_best.yml``), every exploit (lineage table) and the
        population-progress figure. Each trial is tracked in MLflow under the run of this ``kedro run``.

    Raises:
        alloy_mtl.config.ParameterError: bad ``training``, ``<arch>.train_options`` or ``tuning`` values.
        alloy_mtl.tuning.population.TuningUnavailableError: Ray Tune is not installed.
    """
    arch = str(train_options.get("arch", ""))
    params = parse_training_params(training, train_options, arch=arch)
    settings = parse_params(TuningParams, tuning, "tuning")
    logger.info("PBT of %s with %s", params.arch, settings.model_dump(mode="json"))
    outcome = run_pbt(
        model_input.images,
        model_input.metadata,
        params,
        settings,
        name=f"{params.arch}-{datetime.now():%Y%m%dT%H%M%S}",
    )
    figure = population_progress(outcome.history, outcome.lineage, settings.metric, f"PBT of {params.arch}")
    resolved = trial_params(params, settings).model_dump(mode="json")
    log_population(params.arch, outcome.rows, outcome.lineage, outcome.best, figure, resolved=resolved)
    return outcome.best, outcome.lineage, figure
