"""Label distribution smoothing (LDS, Yang et al. 2021, "Delving into Deep Imbalanced Regression").

The train labels are binned into equal-width bins, the label histogram is convolved with a symmetric
kernel (the effective label density), and each sample is weighted by the inverse (``inv``) or the
inverse square root (``sqrt_inv``) of the smoothed density of its bin. Weights are rescaled to mean 1
over the training samples, so the weighted loss keeps the scale of the unweighted one.

Note: Yang et al.'s reference code takes the square root of the raw counts *before* smoothing for
``sqrt_inv``; here the histogram is smoothed first and then reweighted, so ``sqrt_inv`` weights are
exactly the square root of ``inv`` weights up to scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import convolve1d
from scipy.signal.windows import triang

if TYPE_CHECKING:
    from alloy_mtl.mtl.tasks import LDSConfig

KERNELS = ("gaussian", "triang", "laplace")
REWEIGHTS = ("inv", "sqrt_inv")


def kernel_window(kernel: str, kernel_size: int, sigma: float) -> np.ndarray:
    """Symmetric smoothing window of odd length ``kernel_size``, peak value 1.

    ``gaussian``: exp(-x^2 / (2 sigma^2)); ``laplace``: exp(-|x| / sigma); ``triang``: scipy's triangle
    (``sigma`` unused), for x = -(kernel_size-1)/2 ... (kernel_size-1)/2.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd integer >= 1, got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"sigma: expected sigma > 0, got {sigma}")
    half = (kernel_size - 1) // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    if kernel == "gaussian":
        window = np.exp(-(x**2) / (2.0 * sigma**2))
    elif kernel == "laplace":
        window = np.exp(-np.abs(x) / sigma)
    elif kernel == "triang":
        window = triang(kernel_size)
    else:
        raise ValueError(f"kernel: unknown {kernel!r}; expected one of {KERNELS}")
    return window / window.max()


def label_bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins + 1`` equal-width edges over the finite range of ``values`` (NaN = missing, ignored)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        raise ValueError("values: no finite label to lay out bins on")
    if bins < 1:
        raise ValueError(f"bins: expected an integer >= 1, got {bins}")
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:  # a single label value: one bin width of 1 around it
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value for ``edges``; values outside the range go to the first/last bin."""
    idx = np.searchsorted(edges[1:-1], np.asarray(values, dtype=np.float64), side="right")
    return np.clip(idx, 0, len(edges) - 2)


def smoothed_density(counts: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Label histogram convolved with ``window`` (zero outside the label range)."""
    return convolve1d(np.asarray(counts, dtype=np.float64), window, mode="constant", cval=0.0)


@dataclass(frozen=True)
class LDSWeights:
    """Per-bin sample weights from LDS.

    Attributes:
        edges: ``bins + 1`` bin edges in label units.
        bin_weights: weight of a sample falling into each bin.
    """

    edges: np.ndarray
    bin_weights: np.ndarray

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Weights of samples with labels ``values``."""
        return self.bin_weights[bin_index(values, self.edges)]


def lds_weights(train_labels: np.ndarray, config: LDSConfig) -> LDSWeights:
    """LDS weights from the train labels (NaN = missing, ignored).

    Args:
        train_labels: regression labels of the train split, in the units the loss sees.
        config: the task's LDS settings: ``bins`` equal-width bins over the label range, the ``kernel``
            (``kernel_size`` bins wide, width ``sigma``), ``reweight`` ``inv`` (1 / density) or ``sqrt_inv``
            (1 / sqrt(density)).

    Returns:
        Per-bin weights, scaled so the weights of the training samples have mean 1.
    """
    bins = config.bins
    labels = np.asarray(train_labels, dtype=np.float64)
    labels = labels[np.isfinite(labels)]
    edges = label_bin_edges(labels, bins)
    idx = bin_index(labels, edges)
    counts = np.bincount(idx, minlength=bins)
    density = smoothed_density(counts, kernel_window(config.kernel, config.kernel_size, config.sigma))
    # Bins out of the kernel's reach of any train label hold no train sample; give them the weight of
    # the rarest populated bin so a validation label there is not weighted infinitely.
    density = np.maximum(density, density[density > 0].min())
    weights = 1.0 / density if config.reweight == "inv" else 1.0 / np.sqrt(density)
    weights *= len(labels) / weights[idx].sum()
    return LDSWeights(edges=edges, bin_weights=weights)
