"""Torch datasets and loaders over the consolidated image array (possibly a read-only float16 memmap)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from alloy_mtl.mtl.loading.preprocess import check_bad_pixels, prepare_images
from alloy_mtl.mtl.models.conditioning import attach_settings


def _is_classification(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.integer)


def default_mask(target: np.ndarray) -> np.ndarray:
    """Label-present mask: integer targets ``>= 0``, float targets finite."""
    return target >= 0 if _is_classification(target) else np.isfinite(target)


def fit_target_stats(
    targets: Mapping[str, np.ndarray], indices: Sequence[int] | np.ndarray | None = None
) -> dict[str, tuple[float, float]]:
    """Mean and std (ddof 0) of every float (regression) target over the labelled rows in ``indices``.

    Raises:
        ValueError: a regression target with no finite value in the rows, naming the task.
    """
    stats: dict[str, tuple[float, float]] = {}
    for task, raw in targets.items():
        target = np.asarray(raw)
        if _is_classification(target):
            continue
        values = target if indices is None else target[np.asarray(indices, dtype=np.int64)]
        values = values[np.isfinite(values)].astype(np.float64)
        if values.size == 0:
            raise ValueError(f"fit_target_stats: task '{task}' has no finite target in the given rows")
        std = float(values.std())
        stats[task] = (float(values.mean()), std if std > 0 else 1.0)
    return stats


def standardised_targets(
    targets: Mapping[str, np.ndarray], rows: np.ndarray, stats: Mapping[str, tuple[float, float]]
) -> dict[str, np.ndarray]:
    """Every task's targets at ``rows``, the regression ones standardised by ``stats`` (:func:`fit_target_stats`)."""
    return {
        name: (values[rows] - stats[name][0]) / stats[name][1] if name in stats else values[rows]
        for name, values in targets.items()
    }


PREPARED_CACHE_BYTES = 2 * 1024**3
"""Prepared (corrected, resized) rows are kept in memory when all of them fit in this many bytes."""


def _checked_settings(settings: np.ndarray | None, n: int) -> np.ndarray | None:
    if settings is None:
        return None
    settings = np.asarray(settings, dtype=np.float32)
    if settings.ndim != 2 or settings.shape[0] != n:
        raise ValueError(f"ArrayTaskDataset: settings must be (N, K) = ({n}, K), got shape {settings.shape}")
    return settings


class ArrayTaskDataset(Dataset):
    """Items ``(image float32 (C,H,W), {task: target}, {task: mask})`` from an (N,C,H,W) array.

    Args:
        images: (N, C, H, W) array; a read-only ``np.memmap`` (e.g. float16) is fine, every item is copied.
        targets: per-task (N,) arrays: integer class indices (missing: -1) or floats (missing: NaN).
        indices: rows of ``images`` this dataset exposes (e.g. one split); all rows when None.
        masks: per-task (N,) bool arrays (True = label present); derived from the targets when absent.
        target_stats: ``{task: (mean, std)}`` standardising regression targets (see :func:`fit_target_stats`).
        image_size: resize every image to (image_size, image_size) (bilinear, antialiased); None keeps it.
        bad_pixels: bad-pixel correction before the resize (``alloy_mtl.mtl.loading.preprocess``). Each row
            is prepared once and kept while all prepared rows fit ``PREPARED_CACHE_BYTES``.
        settings: optional (N, K) instrument settings of each image, appended to it as K constant planes
            (an instrument-conditioned model's input: ``alloy_mtl.mtl.models.conditioning``).

    Raises:
        ValueError: wrong array ranks or lengths, out-of-range indices, unknown task in masks/target_stats.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: Mapping[str, np.ndarray],
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        masks: Mapping[str, np.ndarray] | None = None,
        target_stats: Mapping[str, tuple[float, float]] | None = None,
        image_size: int | None = None,
        bad_pixels: str = "none",
        settings: np.ndarray | None = None,
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"ArrayTaskDataset: images must be (N, C, H, W), got shape {images.shape}")
        n = images.shape[0]
        self.images = images
        self.indices = (
            np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        )
        if self.indices.ndim != 1:
            raise ValueError(f"ArrayTaskDataset: indices must be 1-D, got shape {self.indices.shape}")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise ValueError(
                f"ArrayTaskDataset: indices must lie in [0, {n}), got range "
                f"[{self.indices.min()}, {self.indices.max()}]"
            )
        masks = dict(masks or {})
        target_stats = dict(target_stats or {})
        for name, mapping in (("masks", masks), ("target_stats", target_stats)):
            unknown = sorted(set(mapping) - set(targets))
            if unknown:
                raise ValueError(
                    f"ArrayTaskDataset: {name} for unknown task(s) {unknown}; tasks: {sorted(targets)}"
                )
        if image_size is not None and (isinstance(image_size, bool) or int(image_size) < 1):
            raise ValueError(
                f"ArrayTaskDataset: image_size must be a positive integer or None, got {image_size!r}"
            )
        self.settings = _checked_settings(settings, n)
        self.image_size = None if image_size is None else int(image_size)
        self.bad_pixels = check_bad_pixels(bad_pixels)
        # The preprocessing is deterministic: each row is prepared once, not once per epoch (the bad-pixel
        # median filter costs more than a small model's step), while the prepared rows fit PREPARED_CACHE_BYTES.
        height, width = (images.shape[2], images.shape[3]) if image_size is None else (image_size,) * 2
        prepared_bytes = 4 * self.indices.size * images.shape[1] * height * width
        self._prepared: dict[int, torch.Tensor] | None = (
            {} if prepared_bytes <= PREPARED_CACHE_BYTES else None
        )

        self.targets: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}
        for task, raw in targets.items():
            target = np.asarray(raw)
            if target.shape != (n,):
                raise ValueError(
                    f"ArrayTaskDataset: target '{task}' must have shape ({n},), got {target.shape}"
                )
            mask = np.asarray(masks[task], dtype=bool) if task in masks else default_mask(target)
            if mask.shape != (n,):
                raise ValueError(f"ArrayTaskDataset: mask '{task}' must have shape ({n},), got {mask.shape}")
            if _is_classification(target):
                self.targets[task] = np.where(mask, target, -1).astype(np.int64)
            else:
                values = target.astype(np.float64)
                if task in target_stats:
                    mean, std = target_stats[task]
                    values = (values - mean) / std
                self.targets[task] = np.where(mask, values, np.nan).astype(np.float32)
            self.masks[task] = mask

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        row = int(self.indices[item])
        image = None if self._prepared is None else self._prepared.get(row)
        if image is None:
            image = torch.from_numpy(np.array(self.images[row], dtype=np.float32, copy=True))
            image = prepare_images(image, self.image_size, self.bad_pixels)
            if self._prepared is not None:
                self._prepared[row] = image
        image = image.clone()
        if self.settings is not None:
            image = attach_settings(image[None], torch.tensor(self.settings[row : row + 1]))[0]
        targets = {task: torch.as_tensor(values[row]) for task, values in self.targets.items()}
        masks = {task: torch.as_tensor(mask[row]) for task, mask in self.masks.items()}
        return image, targets, masks


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy and ``random`` in each worker from its torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool | str = "auto",
    sampler: Sampler | None = None,
    drop_last: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A ``DataLoader`` with a seeded generator and seeded workers.

    Args:
        shuffle: reshuffle every epoch (ignored when ``sampler`` is given).
        seed: seeds the loader's generator (shuffling order, worker seeds).
        pin_memory: True/False, or ``auto`` (pin when CUDA is available).
        sampler: e.g. a class-balanced ``WeightedRandomSampler``; replaces shuffling.
        prefetch_factor: batches each worker prepares ahead (with ``num_workers`` > 0).

    Raises:
        ValueError: non-positive batch size or negative worker count.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"make_dataloader: batch_size must be a positive integer, got {batch_size!r}")
    if int(num_workers) < 0:
        raise ValueError(f"make_dataloader: num_workers must be >= 0, got {num_workers!r}")
    if isinstance(pin_memory, str):
        if pin_memory != "auto":
            raise ValueError(f"make_dataloader: pin_memory must be true, false or 'auto', got {pin_memory!r}")
        pin_memory = torch.cuda.is_available()
    generator = torch.Generator().manual_seed(int(seed))
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = persistent_workers
        kwargs["worker_init_fn"] = seed_worker
        kwargs["prefetch_factor"] = int(prefetch_factor)
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=bool(shuffle) if sampler is None else False,
        sampler=sampler,
        num_workers=int(num_workers),
        pin_memory=bool(pin_memory),
        drop_last=drop_last,
        generator=generator,
        **kwargs,
    )


def loader_generators(loader: DataLoader) -> list[torch.Generator]:
    """The distinct torch generators a loader's iteration draws from (loader, sampler, batch sampler)."""
    found: list[torch.Generator] = []
    for owner in (loader, loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found
