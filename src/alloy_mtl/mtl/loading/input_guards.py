"""What a radiograph must be before a model answers for it: the guards of serving, folder inference and the
inference pipeline alike.

A model answers anything it is given: a flat grey image, I/I0 of -5 or counts read as I/I0 all came back as an
alloy with probability 1.0. These checks refuse such input with what was wrong and what was expected, every
problem in one message, before any work is done on it:

- the request's size (``MAX_INPUT_VALUES`` pixel values), checked on the shape before anything is converted;
- I/I0 inside ``TRANSMISSION_RANGE``: a plate cannot transmit more than the open beam, nor less than nothing
  (the margins allow for noise and the dark-current correction of real detectors);
- no constant image (a blank, a dark frame or a flat grey field carries no alloy).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "MAX_INPUT_VALUES",
    "TRANSMISSION_RANGE",
    "check_input_size",
    "check_radiographs",
    "radiograph_problems",
    "refused_images",
]

TRANSMISSION_RANGE: tuple[float, float] = (-0.05, 1.25)
"""The I/I0 (transmitted over open-beam intensity) a radiograph of a plate can hold, noise allowed."""
MAX_INPUT_VALUES = 2**26
"""The most pixel values (N x C x H x W) one request may carry: 64 Mi, 256 MiB as float32."""
_SHOWN = 5
"""Images named per problem (the count says how many more)."""


def check_input_size(shape: Sequence[int], max_values: int = MAX_INPUT_VALUES) -> None:
    """Refuse a request of more than ``max_values`` pixel values, from its shape alone.

    Raises:
        ValueError: naming the shape, its size and the limit.
    """
    values = int(np.prod([int(n) for n in shape], dtype=np.int64))
    if values > max_values:
        raise ValueError(
            f"input: shape {tuple(int(n) for n in shape)} holds {values:,} pixel values, more than the "
            f"{max_values:,} one request may carry; send fewer or smaller images per request"
        )


def radiograph_problems(intensity: np.ndarray, one_image: bool = False) -> list[str]:
    """What is wrong with an (N, C, H, W) batch of finite I/I0 radiographs, one line per kind of problem naming
    the images (empty when nothing is); ``one_image``: a batch of one, named "the image" (a file's row)."""
    flat = intensity.reshape(len(intensity), -1)
    if flat.shape[1] == 0:
        return []
    low, high = TRANSMISSION_RANGE
    lowest, highest = flat.min(axis=1), flat.max(axis=1)
    problems = []
    outside = np.flatnonzero((lowest < low) | (highest > high))
    if len(outside):
        problems.append(
            f"I/I0 outside [{low}, {high}] (a plate transmits between nothing and the open beam) in "
            f"{_images(outside, one_image)}: got {_span(lowest[outside].min(), highest[outside].max())}; counts need "
            "params bit_depth, and I/I0 must be transmitted over open-beam intensity"
        )
    constant = np.flatnonzero(highest == lowest)
    if len(constant):
        who = "the image is constant" if one_image else f"constant {_images(constant)}"
        problems.append(
            f"{who} (every pixel {_number(lowest[constant[0]])}{' in the first' if len(constant) > 1 else ''}): "
            "a blank, dark or flat image shows no plate"
        )
    return problems


def refused_images(images: np.ndarray) -> np.ndarray:
    """Per image of an (N, C, H, W) batch, whether :func:`radiograph_problems` refuses it alone."""
    return np.array([bool(radiograph_problems(image[None], one_image=True)) for image in images], dtype=bool)


def check_radiographs(intensity: np.ndarray) -> None:
    """Refuse a batch of I/I0 radiographs with any of :func:`radiograph_problems`.

    Raises:
        ValueError: every problem found, in one message.
    """
    problems = radiograph_problems(intensity)
    if problems:
        raise ValueError("input: " + "; ".join(problems))


def _images(indices: np.ndarray, one_image: bool = False) -> str:
    if one_image:
        return "the image"
    shown = ", ".join(str(int(i)) for i in indices[:_SHOWN])
    more = f" and {len(indices) - _SHOWN} more" if len(indices) > _SHOWN else ""
    return f"image{'s' if len(indices) > 1 else ''} {shown}{more} (of the batch, from 0)"


def _span(low: float, high: float) -> str:
    return f"[{_number(low)}, {_number(high)}]"


def _number(value: float) -> str:
    return f"{float(value):.4g}"
