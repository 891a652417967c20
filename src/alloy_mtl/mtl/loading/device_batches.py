"""A whole split held on the training device, batched there: no loader between the data and a GPU.

At the paper scale the model input is 12,000 x 3 x 64 x 64 float16 (0.3 GB): it fits in GPU memory many
times over, and indexing it there costs microseconds where a ``DataLoader`` collates on the CPU and copies
every batch. :class:`DeviceBatches` yields the same batches, in the same order, as
``make_dataloader(dataset, batch_size, shuffle=..., seed=..., sampler=...)`` would, so switching it on changes
speed, not results.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import RandomSampler, Sampler, SequentialSampler

from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset
from alloy_mtl.mtl.loading.preprocess import prepare_images
from alloy_mtl.mtl.models.conditioning import attach_settings

#: ``data_on_device: auto`` keeps a split on a CUDA device when it takes at most this share of the memory.
AUTO_MEMORY_SHARE = 0.25


class DeviceBatches:
    """Iterates ``(images float32, {task: target}, {task: mask})`` batches of an :class:`ArrayTaskDataset`
    whose images, targets and masks were copied to ``device`` once.

    Images stay in their stored dtype (float16) on the device and become float32 per batch, as the dataset's
    items do; a dataset that resizes is resized once here.

    Args:
        dataset: the split.
        batch_size: images per batch.
        device: where the split lives and the batches come from.
        shuffle: a new random order every epoch (ignored when ``sampler`` is given).
        seed: seeds the order exactly as ``make_dataloader``'s generator does.
        sampler: e.g. a ``DistributedSampler`` or a class-balanced sampler (its ``set_epoch`` is honoured by
            the trainer, which finds it as ``.sampler``).
        drop_last: drop a last incomplete batch.
    """

    def __init__(
        self,
        dataset: ArrayTaskDataset,
        batch_size: int,
        device: torch.device | str,
        *,
        shuffle: bool = False,
        seed: int = 0,
        sampler: Sampler | None = None,
        drop_last: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f"DeviceBatches: batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(int(seed))
        if sampler is None:
            sampler = (
                RandomSampler(dataset, generator=self.generator) if shuffle else SequentialSampler(dataset)
            )
        self.sampler = sampler
        self.batch_sampler = None
        rows = dataset.indices
        images = torch.from_numpy(np.ascontiguousarray(dataset.images[rows]))
        size = dataset.image_size
        resizes = size is not None and tuple(images.shape[-2:]) != (size, size)
        if resizes or dataset.bad_pixels != "none":
            images = torch.cat(
                [prepare_images(chunk.float(), size, dataset.bad_pixels) for chunk in images.split(1024)]
            )
        if dataset.settings is not None:
            images = attach_settings(images.float(), torch.from_numpy(dataset.settings[rows]))
        self.images = images.to(self.device)
        self.targets = {t: torch.from_numpy(v[rows]).to(self.device) for t, v in dataset.targets.items()}
        self.masks = {t: torch.from_numpy(m[rows]).to(self.device) for t, m in dataset.masks.items()}

    @property
    def nbytes(self) -> int:
        """Device memory the images take."""
        return self.images.numel() * self.images.element_size()

    def __len__(self) -> int:
        count = len(self.sampler)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]]:
        # a DataLoader draws its iterator's base seed from its generator first: same stream, same order
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.int64)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            if self.drop_last and len(index) < self.batch_size:
                break
            index = index.to(self.device, non_blocking=True)
            yield (
                self.images.index_select(0, index).float(),
                {t: v.index_select(0, index) for t, v in self.targets.items()},
                {t: m.index_select(0, index) for t, m in self.masks.items()},
            )


def use_device_data(setting: Literal["auto"] | bool, device: torch.device, nbytes: int) -> bool:
    """Whether splits of ``nbytes`` should live on ``device`` (``training.data_on_device``).

    ``auto``: on a CUDA device, when they take at most :data:`AUTO_MEMORY_SHARE` of its memory (loader
    workers then serve only the test split); ``true``: always (also on the CPU, where it only skips the
    collation); ``false``: never (a ``DataLoader`` with ``num_workers``, ``prefetch_factor`` and pinned
    memory feeds the device).
    """
    if setting is not True and setting is not False:
        if device.type != "cuda":
            return False
        total = torch.cuda.get_device_properties(device).total_memory
        return nbytes <= AUTO_MEMORY_SHARE * total
    return bool(setting)
