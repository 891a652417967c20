"""A folder of frames without labels (flat fields): its ``metadata.csv`` listing, as a lab stores per-channel files
(``path`` cells joined by ``;``), or else every PNG/TIFF file in it, in name order; every frame that cannot be
read named in one error."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.images import read_image
from alloy_mtl.tracking.listed_images import ListedImage, has_listing, image_files, listed_images

__all__ = ["read_frames"]

logger = logging.getLogger(__name__)


def read_frames(folder: str | Path, bit_depth: int | None, parameter: str) -> np.ndarray:
    """The frames of ``folder`` stacked (N, C, H, W) float32, scaled to [0, 1] of ``bit_depth`` (None: the
    files' own type).

    Raises:
        ValueError: the folder is missing or holds no frame (naming ``parameter``, the setting that named it).
        DataValidationError: frames that cannot be read or whose shapes differ, every one named.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"parameters {parameter}: '{root}' is not a folder")
    entries: list[tuple[str, ListedImage | Path]]
    if has_listing(root):
        entries = [(item.name, item) for item in listed_images(root, parameter)]
    else:
        entries = [(p.name, p) for p in image_files(root, parameter=parameter)]
    frames, problems = [], []
    for name, entry in entries:
        try:
            frame = (
                entry.read(bit_depth, grey_rgb=True)
                if isinstance(entry, ListedImage)
                else read_image(entry, bit_depth, grey_rgb=True)
            )
        except ValueError as error:  # DataValidationError is one
            problems.append(f"{name}: {error}")
            continue
        frames.append((name, frame))
    shapes = {frame.shape for _, frame in frames}
    if len(shapes) > 1:
        first = frames[0][1].shape
        problems += [
            f"{name}: shape {f.shape}, the first frame's is {first}" for name, f in frames if f.shape != first
        ]
    if problems:
        raise DataValidationError(
            f"parameters {parameter}: {len(problems)} of {len(entries)} frame(s) in '{root}' cannot be used: "
            + "; ".join(problems)
        )
    logger.info("read %d frame(s) of shape %s from %s", len(frames), frames[0][1].shape, root)
    return np.stack([frame for _, frame in frames]).astype(np.float32)
