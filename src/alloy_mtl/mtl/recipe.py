"""One training run from typed parameters: data -> loaders -> model -> trainer -> test predictions.

This is the whole recipe that a Kedro node, a benchmark or a notebook calls; it knows nothing of Kedro.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from alloy_mtl.mtl.device import GLOBAL_RNG_LOCK, seed_everything
from alloy_mtl.mtl.labelled_prediction import labelled_dataset, predictions_frame, task_targets
from alloy_mtl.mtl.loading.datasets import (
    ArrayTaskDataset,
    default_mask,
    fit_target_stats,
    make_dataloader,
    standardised_targets,
)
from alloy_mtl.mtl.loading.instrument_settings import conditioning_keys, settings_array
from alloy_mtl.mtl.loading.loaders import balanced_task, training_loaders
from alloy_mtl.mtl.loading.preprocess import prepare_images
from alloy_mtl.mtl.losses.task_losses import build_task_losses
from alloy_mtl.mtl.models.input_transform import InputNormalizer
from alloy_mtl.mtl.models.multitask import build_model
from alloy_mtl.mtl.optim.optimizers import OPTIMIZERS
from alloy_mtl.mtl.parallel.ddp import DDPStrategy
from alloy_mtl.mtl.parallel.process_group import DistributedContext, is_main_process, setup_distributed
from alloy_mtl.mtl.params import TrainingParams, parse_training_params
from alloy_mtl.mtl.run_identity import (
    run_identity,
    set_aside_checkpoints,
)
from alloy_mtl.mtl.tasks import TaskSpec
from alloy_mtl.mtl.training.after_training import fit_after_training
from alloy_mtl.mtl.training.callbacks import Callback, LoggingCallback
from alloy_mtl.mtl.training.checkpoint_callback import CheckpointCallback
from alloy_mtl.mtl.training.checkpoint_io import CheckpointMismatchError
from alloy_mtl.mtl.training.checkpoint_lock import checkpoint_lock
from alloy_mtl.mtl.training.predict import predict
from alloy_mtl.mtl.training.summary_warmup import warm_up_on_training_images
from alloy_mtl.mtl.training.trainer import Trainer
from alloy_mtl.mtl.training.trainer_state import delivered_validation

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What one training run hands back."""

    bundle: dict[str, Any]
    """Best weights plus everything needed to rebuild the model (see :func:`load_model`)."""
    history: pd.DataFrame
    """One row per epoch (losses, accuracies, task weights, gradient diagnostics)."""
    predictions: pd.DataFrame
    """Test-split predictions in the evaluation contract (``alloy_true``, ``prob_<alloy>``, ...)."""
    summary: dict[str, Any]
    """Parameter count, device, wall time, epochs trained."""


def split_indices(metadata: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices of the train, val and test splits (from the ``split`` column)."""
    if "split" not in metadata.columns:
        raise ValueError("model input metadata has no 'split' column; run the data_processing pipeline")
    split = metadata["split"].to_numpy()
    indices = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    empty = [name for name, rows in indices.items() if rows.size == 0]
    if empty:
        raise ValueError(f"model input has no rows in split(s) {empty}")
    return indices


def _subsample(rows: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or rows.size <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=int(limit), replace=False))


def _check_labels(tasks: Sequence[TaskSpec], targets: Mapping[str, np.ndarray], rows: np.ndarray) -> None:
    for task in tasks:
        if not default_mask(targets[task.name][rows]).any():
            raise ValueError(
                f"task '{task.name}': no training image has a '{task.target}' label; set "
                f"training.tasks.{task.name}.enabled: false for this dataset (class-per-folder data has no "
                "thickness or absorption)"
            )


def _warn_ignored(params: TrainingParams) -> None:
    if "momentum" in params.model_fields_set and "momentum" not in OPTIMIZERS.accepted(params.optimizer):
        logger.warning(
            "training.momentum=%s is ignored: optimizer %s takes none", params.momentum, params.optimizer
        )


@dataclass
class PreparedExperiment:
    """Everything a training run needs before its trainer exists (shared by the node, benchmarks and PBT)."""

    params: TrainingParams
    tasks: list[TaskSpec]
    rows: dict[str, np.ndarray]
    """Row indices of the train, val and test splits."""
    train_rows: np.ndarray
    """The (possibly subsampled) training rows."""
    image_size: int
    loaders: dict[str, torch.utils.data.DataLoader]
    model: torch.nn.Module
    losses: dict[str, Any]
    identity: dict[str, str]
    """What a checkpoint must share with this run to be resumed (see :func:`run_identity`)."""
    context: DistributedContext | None = None
    """The torchrun process group this run joined; None for one process."""

    def log_keys(self) -> tuple[str, ...]:
        """The epoch metrics the logging callback shows."""
        accuracies = (f"val_{t.name}_acc" for t in self.tasks if t.is_classification)
        return ("train_loss", "val_loss", *accuracies, "lr")


def loss_targets(
    params: TrainingParams, tasks: Sequence[TaskSpec], train_targets: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The train labels whose class frequencies the losses correct for: those of the batches they see.

    With ``class_balanced_sampler`` the batches draw the first classification task's classes equally often, so
    a prior-correcting loss (``logit_adjusted``, ``balanced_softmax``, ``cb_focal``) must correct for a uniform
    prior; correcting for the split's long tail again would push every prediction towards the rarest alloy.
    """
    balanced = balanced_task(params, tasks)
    if balanced is None:
        return dict(train_targets)
    labels = np.asarray(train_targets[balanced.name])
    # one label per class the sampler draws: a uniform prior
    return {**train_targets, balanced.name: np.unique(labels[labels >= 0])}


def prepare_experiment(
    images: np.ndarray, metadata: pd.DataFrame, params: TrainingParams | Mapping[str, Any]
) -> PreparedExperiment:
    """Seed, then build the datasets, loaders, model (fitted normaliser and target scaler) and task losses.

    Raises:
        alloy_mtl.config.ParameterError: invalid parameters.
        ValueError: a target column is missing, a split is empty, or a task has no training label.
    """
    params = parse_training_params(params)
    _warn_ignored(params)
    context = setup_distributed(params.distributed, params.device)  # None unless torchrun started several
    tasks = params.task_specs
    targets = task_targets(metadata, tasks)
    rows = split_indices(metadata)
    train_rows = _subsample(rows["train"], params.max_train_images, params.seed)
    _check_labels(tasks, targets, train_rows)
    target_stats = fit_target_stats(
        {t.name: targets[t.name] for t in tasks if not t.is_classification}, train_rows
    )
    image_size = params.image_size or images.shape[-1]
    instrument_keys = conditioning_keys(metadata, train_rows, params.instrument_conditioning)
    settings = settings_array(instrument_keys, len(metadata), metadata) if instrument_keys else None
    datasets = {
        name: ArrayTaskDataset(
            images,
            targets,
            split_rows,
            target_stats=target_stats,
            image_size=None if image_size == images.shape[-1] else image_size,
            bad_pixels=params.bad_pixels,
            settings=settings,
        )
        for name, split_rows in (("train", train_rows), ("val", rows["val"]), ("test", rows["test"]))
    }
    train_targets = standardised_targets(targets, train_rows, target_stats)
    loaders = training_loaders(datasets, params, tasks, train_targets, context)
    # Nothing above draws from the process-wide generators (the loaders and the subsample have their own); the
    # lock keeps another thread's run from seeding or drawing between the seed and the initial weights.
    with GLOBAL_RNG_LOCK:
        seed_everything(params.seed)
        model = build_model(
            params.arch,
            in_chans=images.shape[1],
            image_size=int(image_size),
            tasks=tasks,
            activation=params.activation,
            pretrained=params.pretrained,
            fds_train_targets=train_targets,
            input_transform=params.input_transform,
            instrument_keys=instrument_keys,
            wedge_summary=params.wedge_summary,
            **params.model_options,
        )
    model.target_scaler.set_stats(target_stats)
    prepare = partial(prepare_images, size=None, bad_pixels=params.bad_pixels)
    if settings is not None:
        model.conditioning.fit(settings[train_rows])
        logger.info("%s: conditioned on the instrument settings %s", params.arch, instrument_keys)
    if model.wedge_summary is not None:
        model.wedge_summary.fit(images, train_rows, preprocess=prepare)
    if isinstance(model.normalizer, InputNormalizer):
        model.normalizer.fit(images, train_rows, preprocess=prepare)
    if params.summary_warmup_epochs:
        warm_up_on_training_images(
            model,
            images,
            targets,
            rows["train"],
            target_stats=target_stats,
            like=datasets["train"],
            params=params,
        )
    return PreparedExperiment(
        params=params,
        tasks=list(tasks),
        rows=rows,
        train_rows=train_rows,
        image_size=int(image_size),
        loaders=loaders,
        model=model,
        losses=build_task_losses(tasks, loss_targets(params, tasks, train_targets)),
        identity=run_identity(params, metadata, train_rows),
        context=context,
    )


def train_from_params(
    images: np.ndarray,
    metadata: pd.DataFrame,
    params: TrainingParams | Mapping[str, Any],
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    *,
    conformal_data: Callable[[], tuple[np.ndarray, pd.DataFrame]] | None = None,
) -> TrainingResult:
    """Train one multi-task model on the train split, select on val, predict the test split.

    Args:
        images: (N, C, H, W) array, possibly a read-only memory map.
        metadata: one row per image with the contract columns and ``split``.
        params: the training parameters (a mapping is parsed into :class:`TrainingParams`).
        checkpoint_dir: where ``last.pt``/``best.pt`` go; None trains without checkpoints.
        callbacks: per-epoch callbacks (tracking plugs in here).
        conformal_data: returns the labelled (images, metadata) the conformal sets are fitted on instead of the
            validation split (``training.conformal_set``), the images shaped like ``images``; called after
            training.

    Returns:
        The bundle, history, test predictions and a summary.
    """
    prepared = prepare_experiment(images, metadata, params)
    params, tasks, rows, train_rows = prepared.params, prepared.tasks, prepared.rows, prepared.train_rows
    model, losses, loaders, image_size = (
        prepared.model,
        prepared.losses,
        prepared.loaders,
        prepared.image_size,
    )
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    identity, context = prepared.identity, prepared.context
    log_keys = prepared.log_keys()

    def fit(resume: bool) -> tuple[Trainer, pd.DataFrame]:
        saving = [] if directory is None else [CheckpointCallback(directory, resume, identity)]
        trainer = Trainer(
            model,
            tasks,
            losses,
            params.trainer_settings(),
            callbacks=[LoggingCallback(log_keys, label=params.arch), *callbacks, *saving],
            strategy=None if context is None else DDPStrategy(context),
        )
        trainer.label = params.arch
        return trainer, trainer.fit(loaders["train"], loaders["val"])

    start = time.perf_counter()
    with checkpoint_lock(directory):
        try:
            trainer, history = fit(params.resume is not False and directory is not None)
        except CheckpointMismatchError:
            if params.resume is True or directory is None:
                raise
            # The fingerprint is checked before any state is loaded, so the model still holds its initial weights.
            moved = set_aside_checkpoints(directory) if is_main_process() else directory
            if context is not None:
                context.barrier()  # every rank starts afresh only once rank 0 moved the folder
            logger.warning("checkpoints in %s came from another configuration; moved to %s", directory, moved)
            trainer, history = fit(False)
    wall = time.perf_counter() - start
    conformal_loader = None
    if conformal_data is not None:
        dataset = labelled_dataset(
            trainer.model, *conformal_data(), tasks, image_size=image_size, bad_pixels=params.bad_pixels
        )
        conformal_loader = make_dataloader(dataset, params.batch_size)
    fitted = fit_after_training(
        trainer.model, loaders, tasks, params, trainer.device, conformal_loader=conformal_loader
    )

    outputs = predict(trainer.model, loaders["test"], tasks, device=trainer.device)
    predictions = predictions_frame(outputs, metadata.iloc[rows["test"]], tasks)
    conditioned = {"instrument_keys": model.instrument_keys} if model.instrument_keys else {}
    bundle = {
        "arch": params.arch,
        "state_dict": {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
        "in_chans": int(images.shape[1]),
        "image_size": int(image_size),
        "activation": params.activation,
        "model_options": {
            "input_transform": params.input_transform,
            **params.model_options,
            **conditioned,
            **({"wedge_summary": True} if params.wedge_summary else {}),
        },
        "tasks": params.enabled_tasks,
        "preprocessing": {"bad_pixels": params.bad_pixels},
    }
    summary = {
        "arch": params.arch,
        "n_params": int(sum(p.numel() for p in trainer.model.parameters())),
        "device": str(trainer.device),
        "world_size": 1 if context is None else context.world_size,
        "epochs_trained": len(history),
        "wall_time_s": wall,
        "n_train_images": len(train_rows),
        "gradient_method": trainer.method.name,
        **({} if model.image_gate is None else {"image_gate": float(model.image_gate.detach())}),
        **fitted,
        **delivered_validation(trainer, history, tasks),
    }
    logger.info("trained %s: %d epochs in %.1f s on %s", params.arch, len(history), wall, trainer.device)
    return TrainingResult(bundle=bundle, history=history, predictions=predictions, summary=summary)
