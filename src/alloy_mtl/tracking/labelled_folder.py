"""A labelled folder from the detector in operation, read as the served model takes it, and the model's answers
for it beside the labels (what the conformal sets are refitted on: :mod:`alloy_mtl.evaluation.unit_conformal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from alloy_mtl.data.ingest import ingest_dataset
from alloy_mtl.evaluation.unit_conformal import TRUE_SUFFIX
from alloy_mtl.mtl.loading.preprocess import prepare_images
from alloy_mtl.mtl.loading.resize import check_resizable
from alloy_mtl.tracking.inference import Predictor, PreparedFolder, failed_rows, predict_prepared

__all__ = ["LabelledFolder", "labelled_answers", "read_labelled"]

LABEL_COLUMNS = {"alloy": "alloy", "thickness_mm": "thickness_mm", "absorption": "absorption"}
"""Truth column of the ingest metadata -> the model's output column it labels."""


@dataclass(frozen=True)
class LabelledFolder:
    """Labelled images, prepared as the model takes them (N x C x size x size), and their ingest metadata."""

    folder: Path
    images: np.ndarray
    metadata: pd.DataFrame


def read_labelled(
    folder: Path, in_chans: int, image_size: int, *, bit_depth: int | None = None, bad_pixels: str = "none"
) -> LabelledFolder:
    """Read a labelled ``csv_folder`` through the lab ingest (every bad file and row named at once) and prepare
    its images as the model takes them.

    Raises:
        ValueError: the ingest's problems, or images of another channel count, not square or smaller than the
            model's size, naming the folder.
    """
    where = f"parameters inference.unit_conformal.calibration: '{folder}'"
    try:
        data = ingest_dataset(folder, "csv_folder", bit_depth=bit_depth)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    images = np.asarray(data.images, dtype=np.float32)
    problems = []
    if images.shape[1] != in_chans:
        problems.append(f"{images.shape[1]}-channel images, the model takes {in_chans}")
    try:
        check_resizable(images.shape[2], images.shape[3], image_size)
    except ValueError as error:
        problems.append(str(error))
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    prepared = prepare_images(torch.from_numpy(images), image_size, bad_pixels).numpy()
    return LabelledFolder(folder, prepared, data.metadata.reset_index(drop=True))


def labelled_answers(
    model: Predictor,
    labelled: LabelledFolder,
    *,
    batch_size: int = 64,
    instrument: Mapping[str, float] | None = None,
    reject_rate: float | None = None,
) -> pd.DataFrame:
    """The model's output columns for each labelled image, with the labels as ``<column>_true``.

    Raises:
        ValueError: images the model could not answer, naming them.
    """
    ids = labelled.metadata["image_id"].astype(str).tolist()
    folder = PreparedFolder(
        rows=[{"file": image_id, "error": ""} for image_id in ids],
        good=list(enumerate(labelled.images)),
        in_chans=int(labelled.images.shape[1]),
        image_size=int(labelled.images.shape[2]),
    )
    answers = predict_prepared(
        model, folder, batch_size=batch_size, instrument=instrument, reject_rate=reject_rate
    )
    failed = failed_rows(answers)
    if len(failed):
        listed = "; ".join(f"{row.file}: {row.error}" for row in failed.head(5).itertuples())
        raise ValueError(
            f"parameters inference.unit_conformal.calibration: '{labelled.folder}': the model could not answer "
            f"{len(failed)} labelled image(s): {listed}"
        )
    for label, column in LABEL_COLUMNS.items():
        if label in labelled.metadata.columns:
            answers[f"{column}{TRUE_SUFFIX}"] = labelled.metadata[label].to_numpy()
    return answers
