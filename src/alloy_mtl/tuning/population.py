"""Run Population Based Training of one architecture on Ray Tune (local Ray, or a cluster by address).

Ray is an optional extra (``pip install -e ".[tune]"``) imported only here, when a tune pipeline runs.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.mtl.params import TrainingParams
from alloy_mtl.tuning.lineage import best_configuration, extract_lineage, history_frame
from alloy_mtl.tuning.params import TuningParams
from alloy_mtl.tuning.trainable import RESTORE_KEY, TrialSetup, train_trial

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[tune]"'
#: Result keys Ray adds to every report that say nothing about the member's training.
RAY_BOOKKEEPING = frozenset(
    {
        "timestamp",
        "pid",
        "hostname",
        "node_ip",
        "date",
        "done",
        "experiment_tag",
        "checkpoint_dir_name",
        "time_since_restore",
        "iterations_since_restore",
        "time_this_iter_s",
        "should_checkpoint",
    }
)


class TuningUnavailableError(ImportError):
    """Ray Tune is not installed: the tune pipelines need the ``tune`` extra."""


def require_ray() -> Any:
    """Import Ray, or fail naming the extra to install."""
    try:
        import ray
        from ray import tune  # noqa: F401 - the extra is ray[tune], not bare ray
    except ImportError as err:
        raise TuningUnavailableError(
            f"Population Based Training needs Ray Tune, which is not installed ({err}): {INSTALL_HINT}"
        ) from err
    return ray


@dataclass
class PbtOutcome:
    """What one PBT run hands back to the driver."""

    rows: list[dict[str, Any]]
    """Every reported epoch in arrival order (``restore`` parsed where a member restored a checkpoint)."""
    history: pd.DataFrame
    lineage: pd.DataFrame
    best: dict[str, Any]
    experiment_path: str
    settings: dict[str, Any] = field(default_factory=dict)


def search_space(tuning: TuningParams) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ray's initial ``param_space`` and PBT's ``hyperparam_mutations`` (the same distributions)."""
    from ray import tune

    mutations = {
        "optimizer": list(tuning.optimizers),
        "lr": tune.loguniform(tuning.lr.low, tuning.lr.high),
        "weight_decay": tune.loguniform(tuning.weight_decay.low, tuning.weight_decay.high),
    }
    space = {
        "optimizer": tune.choice(list(tuning.optimizers)),
        **{k: mutations[k] for k in ("lr", "weight_decay")},
    }
    return space, mutations


def _recorder(metric: str) -> Any:
    """A driver-side Tune callback that keeps every result row (the only place results are gathered)."""
    from ray import tune

    class PopulationRecorder(tune.Callback):
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            restore = result.get(RESTORE_KEY) or ""
            row = {
                k: v
                for k, v in result.items()
                if isinstance(v, int | float | str) and k != RESTORE_KEY and k not in RAY_BOOKKEEPING
            }
            row.update(trial_id=trial.trial_id, restore=json.loads(restore) if restore else None)
            self.rows.append(row)
            logger.info(
                "trial %s epoch %s: %s=%.4g (%s, lr=%.3g, wd=%.3g)%s",
                trial.trial_id,
                row.get("epoch"),
                metric,
                float(row.get(metric, float("nan"))),
                row.get("optimizer"),
                float(row.get("lr", float("nan"))),
                float(row.get("weight_decay", float("nan"))),
                f" after restoring {row['restore']['donor_trial_id']}" if row["restore"] else "",
            )

    return PopulationRecorder()


def _init_ray(ray: Any, tuning: TuningParams) -> bool:
    """Connect to ``ray_address`` (or Ray's own ``RAY_ADDRESS``) or start a local Ray; True when this call
    started or connected it (and so shuts it down)."""
    if ray.is_initialized():
        return False
    address = tuning.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("PBT on the Ray cluster at %s", address)
        ray.init(address=address)
    else:
        ray.init(num_cpus=tuning.num_cpus, include_dashboard=False, log_to_driver=True)
    return True


def trial_params(params: TrainingParams, tuning: TuningParams) -> TrainingParams:
    """The training parameters every member starts from (tuning's image size and image cap win when set)."""
    update = {
        key: getattr(tuning, key)
        for key in ("image_size", "max_train_images")
        if getattr(tuning, key) is not None
    }
    return params.model_copy(update=update)


def run_pbt(
    images: np.ndarray,
    metadata: pd.DataFrame,
    params: TrainingParams,
    tuning: TuningParams,
    *,
    name: str,
    storage_dir: str | Path | None = None,
) -> PbtOutcome:
    """Tune ``params.arch``'s optimizer, lr and weight decay with Ray Tune's PopulationBasedTraining.

    Args:
        images, metadata: the model input (sent once to Ray's object store).
        params: the architecture's resolved training parameters (the starting point of every member).
        tuning: the search space and PBT settings.
        name: the Tune experiment name (a folder under ``storage_dir``).
        storage_dir: where trials and checkpoints go (default ``tuning.storage_dir``), made absolute here
            because Ray runs each trial in its own directory.

    Raises:
        TuningUnavailableError: Ray Tune is not installed.
        RuntimeError: every trial failed.
    """
    ray = require_ray()
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    random.seed(tuning.seed)  # PBT explores with the global `random` module of the driver
    np.random.seed(tuning.seed % 2**32)
    storage = Path(storage_dir or tuning.storage_dir).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    space, mutations = search_space(tuning)
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=tuning.perturbation_interval,
        hyperparam_mutations=mutations,
        quantile_fraction=tuning.quantile_fraction,
        resample_probability=tuning.resample_probability,
        perturbation_factors=tuning.perturbation_factors,
    )
    recorder = _recorder(tuning.metric)
    setup = TrialSetup(
        params=trial_params(params, tuning),
        images=np.ascontiguousarray(images),
        metadata=metadata.reset_index(drop=True),
        max_epochs=tuning.max_epochs,
    )
    started = _init_ray(ray, tuning)
    try:
        resources = {"cpu": tuning.cpus_per_trial, "gpu": tuning.gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(train_trial, setup=setup), resources),
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=tuning.metric,
                mode=tuning.mode,
                scheduler=scheduler,
                num_samples=tuning.population_size,
                time_budget_s=tuning.time_budget_s,
                search_alg=BasicVariantGenerator(random_state=tuning.seed),
                reuse_actors=True,  # a paused or exploited member restarts in its process: no re-import
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                callbacks=[recorder],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=tuning.checkpoints_to_keep),
                verbose=0,
            ),
        )
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    if grid.num_errors == len(grid) and len(grid):
        raise RuntimeError(f"every PBT trial of {params.arch} failed; first error: {grid.errors[0]}")
    rows = recorder.rows
    history = history_frame(rows, tuning.metric)
    lineage = extract_lineage(rows)
    settings = tuning.model_dump(mode="json")
    best = best_configuration(
        history, lineage, arch=params.arch, metric=tuning.metric, mode=tuning.mode, settings=settings
    )
    logger.info(
        "PBT of %s: %d trials, %d exploits; best %s=%.4g with %s",
        params.arch,
        history["trial_id"].nunique(),
        len(lineage),
        tuning.metric,
        best["value"],
        best["config"],
    )
    return PbtOutcome(rows, history, lineage, best, str(storage / name), settings)


def describe(outcome: PbtOutcome) -> Mapping[str, Any]:
    """A short summary of a PBT run (for logs and MLflow)."""
    return {
        "trials": int(outcome.history["trial_id"].nunique()),
        "epochs_reported": len(outcome.history),
        "exploits": len(outcome.lineage),
        "best_value": outcome.best["value"],
    }
