"""Class-balanced sampling for long-tailed classification."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler


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
