"""Samplers: class-balanced draws for long-tailed classification, and their per-rank shards under DDP."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler


def class_balanced_weights_per_sample(labels: np.ndarray) -> np.ndarray:
    """Sampling weight of each sample so that every present class is drawn equally often.

    Labelled samples (label >= 0) share their total mass n_labelled equally among the present classes
    (weight n_labelled / (K_present * n_c)); samples with a missing label (-1) keep weight 1, so they are
    drawn as often as without balancing.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    if labels.size == 0:
        raise ValueError("labels: expected at least one sample")
    labelled = labels >= 0
    weights = np.ones(labels.size, dtype=np.float64)
    if labelled.any():
        classes, inverse, counts = np.unique(labels[labelled], return_inverse=True, return_counts=True)
        weights[labelled] = labelled.sum() / (len(classes) * counts[inverse])
    return weights


def class_balanced_sampler(
    labels: np.ndarray,
    generator: torch.Generator | None = None,
    num_samples: int | None = None,
    replacement: bool = True,
) -> WeightedRandomSampler:
    """``WeightedRandomSampler`` drawing each class equally often (see ``class_balanced_weights_per_sample``).

    Args:
        labels: class index per training sample, -1 = missing.
        generator: torch Generator for reproducible draws (seed it with ``manual_seed``).
        num_samples: draws per epoch (default: number of samples).
        replacement: draw with replacement.
    """
    weights = torch.as_tensor(class_balanced_weights_per_sample(labels), dtype=torch.double)
    return WeightedRandomSampler(
        weights,
        num_samples if num_samples is not None else len(weights),
        replacement=replacement,
        generator=generator,
    )


class ShardedClassBalancedSampler(Sampler[int]):
    """The class-balanced draw (``class_balanced_weights_per_sample``) of one epoch, sharded over the ranks.

    Every rank draws the same ``num_samples`` indices from a generator seeded with ``seed + epoch`` (set with
    :meth:`set_epoch`, as for ``DistributedSampler``) and keeps every ``num_replicas``-th from its ``rank``:
    the shards are disjoint in position and together are the single-process draw of that epoch (less the
    tail that does not divide evenly).

    Args:
        labels: class index per training sample, -1 = missing.
        num_replicas: number of ranks.
        rank: this rank.
        seed: shared by every rank.
        num_samples: draws per epoch over all ranks (default: number of samples).
    """

    def __init__(
        self,
        labels: np.ndarray,
        num_replicas: int,
        rank: int,
        seed: int = 0,
        num_samples: int | None = None,
    ) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"ShardedClassBalancedSampler: rank {rank} outside [0, {num_replicas})")
        self.weights = torch.as_tensor(class_balanced_weights_per_sample(labels), dtype=torch.double)
        total = len(self.weights) if num_samples is None else int(num_samples)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.epoch = 0
        self.per_rank = total // self.num_replicas
        self.total = self.per_rank * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch's draw (call before iterating, with the same value on every rank)."""
        self.epoch = int(epoch)

    def epoch_draw(self) -> list[int]:
        """The whole epoch's draw over all ranks (what one process would see)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.multinomial(self.weights, self.total, replacement=True, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_draw()[self.rank : self.total : self.num_replicas])

    def __len__(self) -> int:
        return self.per_rank


class ShardSampler(Sampler[int]):
    """Evaluation shard: indices ``rank, rank + world, ...`` in order, no padding, no repeats.

    The ranks' shards partition the split, so summed per-rank metric sums are exactly the whole split's.
    """

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        self.indices = list(range(int(rank), int(length), int(num_replicas)))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
