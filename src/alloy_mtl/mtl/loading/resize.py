"""The one resize of the project: radiographs to a model's square input size, as training did it.

The CPU recipes train the CNNs on the radiographs downsampled (32 px to 16 px); the deployed model must see
new radiographs downsampled the same way, or it would read another scale without a word. Training
(``ArrayTaskDataset``), the MLflow model and folder inference all call :func:`resize_images`.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812


def check_resizable(height: int, width: int, size: int) -> None:
    """Refuse what the training resize never saw: non-square images and images smaller than ``size``.

    Raises:
        ValueError: naming the image's size and the model's.
    """
    if height != width:
        raise ValueError(
            f"size {height}x{width}: not square; the model takes square radiographs ({size}x{size})"
        )
    if height < size:
        raise ValueError(
            f"size {height}x{width}, the model expects {size}x{size} or larger (it is downsampled)"
        )


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(..., C, H, W) float images resized to (size, size): bilinear, antialiased; unchanged when H = W = size."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    batch = images.reshape(-1, *images.shape[-3:])
    resized = F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.reshape(*images.shape[:-2], size, size)
