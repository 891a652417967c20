"""The train/val/test loaders of one run: single process or one rank of a torchrun job, host or device data.

One process: the train split is shuffled (or drawn class-balanced) by a generator seeded with ``seed``.
Data-parallel: every rank reads its shard of the epoch's order, all shards drawn from the shared seed
(``DistributedSampler`` or :class:`ShardedClassBalancedSampler`, both advanced with ``set_epoch``), and
validates on its shard of the val split (the trainer sums the metric sums). The test split is whole on
every rank. With ``data_on_device`` the train and val splits live on the training device
(:class:`DeviceBatches`); otherwise a ``DataLoader`` with ``num_workers``, ``prefetch_factor`` and pinned
memory on CUDA feeds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler

from alloy_mtl.mtl.device import resolve_device
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, make_dataloader
from alloy_mtl.mtl.loading.device_batches import DeviceBatches, use_device_data
from alloy_mtl.mtl.loading.samplers import ShardedClassBalancedSampler, ShardSampler, class_balanced_sampler
from alloy_mtl.mtl.parallel.process_group import DistributedContext
from alloy_mtl.mtl.params import TrainingParams
from alloy_mtl.mtl.tasks import TaskSpec


def split_nbytes(dataset: ArrayTaskDataset) -> int:
    """Bytes the split's images take in their stored dtype (at the dataset's output size)."""
    channels, height, width = dataset.images.shape[1:]
    if dataset.image_size is not None:
        height = width = dataset.image_size
    return len(dataset) * channels * height * width * np.dtype(dataset.images.dtype).itemsize


def balanced_task(params: TrainingParams, tasks: Sequence[TaskSpec]) -> TaskSpec | None:
    """The task whose classes ``class_balanced_sampler`` draws equally often: the first classification task."""
    if not params.class_balanced_sampler:
        return None
    return next((t for t in tasks if t.is_classification), None)


def training_loaders(
    datasets: Mapping[str, ArrayTaskDataset],
    params: TrainingParams,
    tasks: Sequence[TaskSpec],
    train_targets: Mapping[str, np.ndarray],
    context: DistributedContext | None = None,
) -> dict[str, Any]:
    """``{"train", "val", "test"}`` loaders (``DataLoader`` or :class:`DeviceBatches`) for ``params``."""
    balanced = balanced_task(params, tasks)
    labels = None if balanced is None else train_targets[balanced.name]
    sampler: Sampler | None = None
    val_sampler: Sampler | None = None
    if context is None:
        if labels is not None:
            sampler = class_balanced_sampler(labels, generator=torch.Generator().manual_seed(params.seed))
        device = resolve_device(params.device)
    else:
        world, rank = context.world_size, context.rank
        if labels is not None:
            sampler = ShardedClassBalancedSampler(labels, world, rank, seed=params.seed)
        else:
            sampler = DistributedSampler(
                datasets["train"], world, rank, shuffle=True, seed=params.seed, drop_last=True
            )
        val_sampler = ShardSampler(len(datasets["val"]), world, rank)
        device = context.device
    common = {"batch_size": params.batch_size, "seed": params.seed}
    workers = {"num_workers": params.num_workers, "prefetch_factor": params.prefetch_factor}
    test = make_dataloader(datasets["test"], **common, **workers)
    on_device = use_device_data(
        params.data_on_device,
        device,
        split_nbytes(datasets["train"]) + split_nbytes(datasets["val"]),
    )
    if on_device:
        return {
            "train": DeviceBatches(datasets["train"], device=device, shuffle=True, sampler=sampler, **common),
            "val": DeviceBatches(datasets["val"], device=device, sampler=val_sampler, **common),
            "test": test,
        }
    persistent = params.num_workers > 0  # workers survive the epoch instead of restarting each time
    return {
        "train": make_dataloader(
            datasets["train"],
            shuffle=True,
            sampler=sampler,
            persistent_workers=persistent,
            **common,
            **workers,
        ),
        "val": make_dataloader(
            datasets["val"], sampler=val_sampler, persistent_workers=persistent, **common, **workers
        ),
        "test": test,
    }
