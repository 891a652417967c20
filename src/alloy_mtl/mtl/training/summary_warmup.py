"""Warm-up of a gated model's fusion and heads on what it reads beside the image, before the backbone trains.

A model with ``model_options.image_gate`` starts with its image path closed (the gate at 0): it is then an MLP
of the wedge summary and the instrument's settings. Those few numbers per image are cheap to fit on every
training image, where the backbone's epochs see only ``max_train_images`` of them; this module fits them
first, with the backbone skipped (its features are multiplied by 0, so they are not computed), and hands the
trainer a model whose heads already read the summary. The gate, the backbone and the normalisers are left
as they are: the trainer then opens the image path as far as it helps.

The warm-up is plain Adam on the tasks' weighted loss sum (a gradient method acts on the shared layers the
backbone's epochs train); it draws its batches and dropout masks from generators of its own, seeded by the
run's seed, so a run repeats itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, make_dataloader, standardised_targets
from alloy_mtl.mtl.losses.task_losses import TaskLoss, build_task_losses, masked_task_losses, weighted_total
from alloy_mtl.mtl.models.dropout import attach_generator, dropout_seed
from alloy_mtl.mtl.models.multitask import MultiTaskModel
from alloy_mtl.mtl.params import TrainingParams
from alloy_mtl.mtl.tasks import TaskSpec
from alloy_mtl.mtl.training.predict import split_batch

logger = logging.getLogger(__name__)

WARMUP_LR = 1e-3
"""Adam's learning rate for the warm-up (an MLP of a few inputs: Adam's default)."""
WARMUP_BATCH_SIZE = 64
WARMUP_SEED_OFFSET = 7_919
"""Added to the run's seed for the warm-up's batch order and dropout, streams of their own."""


@dataclass(frozen=True)
class SummaryInputs:
    """Every training image's summary and settings (N, extras), with its standardised targets and masks."""

    extras: Tensor
    targets: dict[str, Tensor]
    masks: dict[str, Tensor]


@torch.no_grad()
def summary_inputs(model: MultiTaskModel, dataset: Dataset, batch_size: int = 256) -> SummaryInputs:
    """The model's :meth:`~MultiTaskModel.summary_inputs` of every item of ``dataset`` (images prepared as in
    training: bad pixels corrected, resized, the settings as planes), in the dataset's order."""
    extras: list[Tensor] = []
    targets: dict[str, list[Tensor]] = {}
    masks: dict[str, list[Tensor]] = {}
    for batch in make_dataloader(dataset, batch_size):
        images, batch_targets, batch_masks = split_batch(batch)
        if batch_targets is None or batch_masks is None:
            raise ValueError("summary warm-up: the dataset must yield (images, targets, masks)")
        extras.append(model.summary_inputs(images.float()))
        for name, value in batch_targets.items():
            targets.setdefault(name, []).append(value)
        for name, value in batch_masks.items():
            masks.setdefault(name, []).append(value)
    if not extras:
        raise ValueError("summary warm-up: no training images")
    return SummaryInputs(
        torch.cat(extras),
        {k: torch.cat(v) for k, v in targets.items()},
        {k: torch.cat(v) for k, v in masks.items()},
    )


def warm_up_summary_path(
    model: MultiTaskModel,
    dataset: Dataset,
    tasks: Sequence[TaskSpec],
    losses: Mapping[str, TaskLoss],
    *,
    epochs: int,
    seed: int,
) -> list[float]:
    """Train ``model``'s fusion and heads for ``epochs`` on ``dataset`` with the image gate closed.

    Args:
        model: a gated model whose gate is still 0 (freshly built).
        dataset: the training images, as the trainer's dataset yields them (``(images, targets, masks)``).
        tasks: the tasks, in head order.
        losses: each task's loss, its prior correction for the classes ``dataset`` holds (uniform draws).
        epochs: passes over ``dataset``.
        seed: the run's seed.

    Returns:
        The mean training loss of each epoch.

    Raises:
        ValueError: the model has no image gate, or its gate is open already.
    """
    if model.image_gate is None:
        raise ValueError("summary warm-up: the model has no image gate (model_options.image_gate: true)")
    if float(model.image_gate.detach()) != 0.0:
        raise ValueError(
            f"summary warm-up: the image gate is {float(model.image_gate.detach()):.4g}, not 0: the warm-up trains "
            "the gate-closed model and would ignore the image path it already opened"
        )
    data = summary_inputs(model, dataset)
    fusion = model.summary_fusion()  # the backbone's columns of the fusion are left out of the optimizer
    optimizer = torch.optim.Adam([*fusion.parameters(), *model.heads.parameters()], lr=WARMUP_LR)
    order = torch.Generator().manual_seed(seed + WARMUP_SEED_OFFSET)
    attach_generator(model, torch.Generator().manual_seed(dropout_seed(seed) + WARMUP_SEED_OFFSET))
    was_training = model.training
    model.train()
    history: list[float] = []
    try:
        for epoch in range(epochs):
            permutation = torch.randperm(len(data.extras), generator=order)
            total, batches = 0.0, 0
            for rows in permutation.split(WARMUP_BATCH_SIZE):
                outputs = model.forward_heads(fusion(data.extras[rows]))
                task_losses = masked_task_losses(
                    losses,
                    outputs,
                    {k: v[rows] for k, v in data.targets.items()},
                    {k: v[rows] for k, v in data.masks.items()},
                )
                loss = weighted_total(task_losses, tasks)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, batches = total + float(loss.detach()), batches + 1
            history.append(total / batches)
            logger.debug("summary warm-up epoch %d/%d: loss %.4f", epoch + 1, epochs, history[-1])
    finally:
        model.load_summary_fusion(fusion)
        attach_generator(model, None)
        model.train(was_training)
    logger.info(
        "summary warm-up: %d epochs on %d images, loss %.4f -> %.4f",
        epochs,
        len(data.extras),
        history[0] if history else float("nan"),
        history[-1] if history else float("nan"),
    )
    return history


def warm_up_on_training_images(
    model: MultiTaskModel,
    images: np.ndarray,
    targets: Mapping[str, np.ndarray],
    rows: np.ndarray,
    *,
    target_stats: Mapping[str, tuple[float, float]],
    like: ArrayTaskDataset,
    params: TrainingParams,
) -> None:
    """:func:`warm_up_summary_path` over every training image (``rows`` of ``images``), prepared as the trainer's
    dataset ``like`` prepares them, for ``params.summary_warmup_epochs``; the losses correct for the
    classes' frequencies in ``rows`` (the warm-up draws its batches uniformly)."""
    dataset = ArrayTaskDataset(
        images,
        targets,
        rows,
        target_stats=target_stats,
        image_size=like.image_size,
        bad_pixels=params.bad_pixels,
        settings=like.settings,
    )
    losses = build_task_losses(params.task_specs, standardised_targets(targets, rows, target_stats))
    warm_up_summary_path(
        model, dataset, params.task_specs, losses, epochs=params.summary_warmup_epochs, seed=params.seed
    )
