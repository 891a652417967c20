"""The mixed option: a lab's few labelled radiographs trained together with the (calibrated) simulation.

``data_source.lab_images`` names a labelled lab folder (csv_folder or class_per_folder, read by the ingest).
Its images are resized to the simulation's image size as training resizes, recorded at the simulation's nominal
instrument (after ``calibrate_instrument`` that is the lab's calibrated one; an instrument-conditioned model is
then told the lab's instrument for them) and repeated so that they make ``share`` of the generated image count:
60 lab images beside 6,000 simulated ones would otherwise weigh 1 %. Every lab image goes to the training split
(:func:`alloy_mtl.data.split.assign_split`): the lab's held-out images are scored by ``evaluate_external``, and
the validation split stays simulated. Repeats share the specimen and carry ``~<k>`` after their image id.
"""

from __future__ import annotations

import logging
import tempfile

import numpy as np
import pandas as pd
import torch

from alloy_mtl.constants import INSTRUMENT_COLUMN_PREFIX
from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.split import GIVEN_COLUMN, LAB_SOURCE
from alloy_mtl.data.store import XrayData
from alloy_mtl.mtl.loading.resize import resize_images
from alloy_mtl.physics.instrument_fit import nominal_instrument
from alloy_mtl.physics.simulator import SimulationConfig

__all__ = ["mix_lab_images"]

logger = logging.getLogger(__name__)

_CHUNK = 1024


def mix_lab_images(
    generated: XrayData, lab: XrayData, config: SimulationConfig, share: float, where: str
) -> XrayData:
    """``generated`` followed by ``lab`` (resized, recorded at ``config``'s nominal instrument, repeated).

    Raises:
        DataValidationError: naming ``where`` and every lab image whose channels or size the simulation's images
            do not have (channels must match; images must be square and at least ``config.image_size``).
    """
    size, channels = config.image_size, generated.images.shape[1]
    problems = []
    if lab.images.shape[1] != channels:
        problems.append(
            f"{lab.images.shape[1]} channel(s) per image, the simulation has {channels} ({config.kv_label})"
        )
    height, width = lab.images.shape[2:]
    if height != width or height < size:
        problems.append(
            f"images of {height}x{width} pixels, expected square images of at least {size}x{size}"
        )
    if problems:
        raise DataValidationError(
            f"{where}: the lab images cannot be trained with the simulation: " + "; ".join(problems)
        )
    repeat = max(1, round(share * len(generated) / len(lab)))
    resized = resize_images(
        torch.from_numpy(np.ascontiguousarray(lab.images, dtype=np.float32)), size
    ).numpy()
    total = len(generated) + repeat * len(lab)
    shape = (total, channels, size, size)
    images = np.memmap(
        tempfile.TemporaryFile(prefix="alloy-mtl-mix-"), dtype=np.float32, mode="w+", shape=shape
    )
    for start in range(0, len(generated), _CHUNK):
        stop = min(start + _CHUNK, len(generated))
        images[start:stop] = generated.images[start:stop]
    for k in range(repeat):
        offset = len(generated) + k * len(lab)
        images[offset : offset + len(lab)] = resized
    recorded = [c for c in generated.metadata.columns if c.startswith(INSTRUMENT_COLUMN_PREFIX)]
    lab_rows = [_lab_rows(lab.metadata, config, k, recorded) for k in range(repeat)]
    metadata = pd.concat([generated.metadata, *lab_rows])
    logger.info(
        "mixed %d lab image(s) from %s (x%d, %.0f %% of the %d generated) into the training data",
        len(lab),
        where,
        repeat,
        100 * repeat * len(lab) / len(generated),
        len(generated),
    )
    return XrayData(images=images, metadata=metadata.reset_index(drop=True))


def _lab_rows(metadata: pd.DataFrame, config: SimulationConfig, k: int, recorded: list[str]) -> pd.DataFrame:
    """The lab's rows, repeat ``k``: their own split dropped (they train), the recorded instrument columns the
    simulation has set to its nominal instrument."""
    rows = metadata.drop(columns=[c for c in (GIVEN_COLUMN, "split") if c in metadata.columns])
    rows["source"] = LAB_SOURCE
    if k:
        rows["image_id"] = rows["image_id"].astype(str) + f"~{k}"
    instrument = nominal_instrument(config)
    for column in recorded:
        rows[column] = instrument[column.removeprefix(INSTRUMENT_COLUMN_PREFIX)]
    return rows
