"""Predict a folder of PNG/TIFF radiographs with a registered model; one CSV row per file, or per image its
``metadata.csv`` lists (per-channel files allowed: :mod:`alloy_mtl.tracking.listed_images`).

Files are read with the ingest reader (:func:`alloy_mtl.data.ingest.read_image`): 16-bit files are scaled by
``inference.bit_depth`` as ingest scales them by ``data_source.options.bit_depth`` (give both the same value),
and for a one-channel model an RGB file whose three channels are equal is read as one channel, as ingest does.
A file that cannot be used (corrupt, wrong channel count, wrong size) gets its error in its row; the others
are still predicted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from alloy_mtl.data.ingest import read_image
from alloy_mtl.mtl.loading.input_guards import radiograph_problems
from alloy_mtl.mtl.loading.preprocess import prepare_images
from alloy_mtl.mtl.loading.resize import check_resizable
from alloy_mtl.tracking.listed_images import ListedImage

logger = logging.getLogger(__name__)

CHAMPION_URI = "models:/{name}@champion"


class Predictor(Protocol):
    """What inference needs of a loaded MLflow pyfunc."""

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame: ...


@dataclass(frozen=True)
class InferenceSettings:
    """``parameters_inference.yml`` ``inference`` (validated by :func:`parse_inference_settings`)."""

    input: Path
    model_uri: str
    recursive: bool = False
    batch_size: int = 64
    bit_depth: int | None = None
    instrument: dict[str, float] | None = None
    reject_rate: float | None = None


def parse_inference_settings(params: Mapping[str, Any], model_name: str) -> InferenceSettings:
    """Validate the ``inference`` parameters before anything is loaded or written.

    Raises:
        ValueError: naming ``inference.<key>`` and what was expected.
    """
    known = {
        "input",
        "model_uri",
        "recursive",
        "batch_size",
        "bit_depth",
        "instrument",
        "reject_rate",
        "drift",
        "unit_conformal",
    }
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"parameters inference: unknown key(s) {unknown}; expected {sorted(known)}")
    folder = params.get("input")
    if not folder:
        raise ValueError(
            "parameters inference.input: not set; pass the folder of images, e.g. "
            "`kedro run --pipeline inference --params inference.input=/lab/new_images`"
        )
    path = Path(str(folder)).expanduser()
    if not path.is_dir():
        raise ValueError(f"parameters inference.input: '{path}' is not a folder of PNG/TIFF images")
    batch_size = params.get("batch_size", 64)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"parameters inference.batch_size: got {batch_size!r}, expected a positive integer")
    recursive = params.get("recursive", False)
    if not isinstance(recursive, bool):
        raise ValueError(f"parameters inference.recursive: got {recursive!r}, expected true or false")
    bit_depth = params.get("bit_depth")
    if bit_depth is not None and (
        isinstance(bit_depth, bool) or not isinstance(bit_depth, int) or not 1 <= bit_depth <= 16
    ):
        raise ValueError(
            f"parameters inference.bit_depth: got {bit_depth!r}, expected null or the detector's bit depth 1..16 "
            "(the data_source.options.bit_depth the model's training data was ingested with)"
        )
    reject_rate = params.get("reject_rate")
    if reject_rate is not None and (
        isinstance(reject_rate, bool) or not isinstance(reject_rate, (int, float)) or not 0 <= reject_rate < 1
    ):
        raise ValueError(
            f"parameters inference.reject_rate: got {reject_rate!r}, expected null (the model's default) or the "
            "share of known-alloy images the unknown-material threshold may reject, in [0, 1)"
        )
    model_uri = params.get("model_uri") or CHAMPION_URI.format(name=model_name)
    return InferenceSettings(
        input=path,
        model_uri=str(model_uri),
        recursive=recursive,
        batch_size=batch_size,
        bit_depth=bit_depth,
        instrument=_instrument(params.get("instrument")),
        reject_rate=None if reject_rate is None else float(reject_rate),
    )


def _instrument(value: Any) -> dict[str, float] | None:
    """``inference.instrument``: null, or ``{setting: number}`` (e.g. ``kv_scale: 1.01``), every problem named."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"parameters inference.instrument: got {value!r}, expected null or a mapping such as "
            "{kv_scale: 1.01, al_filter_mm: 1.2}"
        )
    problems, instrument = [], {}
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not np.isfinite(number):
            problems.append(f"{key}: got {number!r}, expected a finite number")
        else:
            instrument[str(key)] = float(number)
    if problems:
        raise ValueError("parameters inference.instrument: " + "; ".join(problems))
    return instrument


@dataclass(frozen=True)
class PreparedFolder:
    """A folder read once, as the model takes its images: what prediction and the drift alarm share."""

    rows: list[dict[str, Any]]
    """One ``{"file", "error"}`` row per file (``error`` set where the file cannot be used)."""
    good: list[tuple[int, np.ndarray]]
    """``(row index, C x size x size float32 image)`` of each usable file."""
    in_chans: int
    image_size: int

    def images(self) -> np.ndarray:
        """The usable images stacked (N x C x size x size; N may be 0)."""
        if not self.good:
            return np.empty((0, self.in_chans, self.image_size, self.image_size), np.float32)
        return np.stack([image for _, image in self.good])

    def usable_files(self) -> list[str]:
        """The files of :meth:`images`, in the same order."""
        return [self.rows[index]["file"] for index, _ in self.good]


def prepare_folder(
    files: Sequence[Path | ListedImage],
    in_chans: int,
    image_size: int,
    *,
    root: Path,
    bit_depth: int | None = None,
    bad_pixels: str = "none",
) -> PreparedFolder:
    """Read, check and prepare each file once (:func:`read_prepared`)."""
    rows, good = read_prepared(
        files, in_chans, image_size, root=root, bit_depth=bit_depth, bad_pixels=bad_pixels
    )
    return PreparedFolder(rows, good, in_chans, image_size)


def predict_prepared(
    model: Predictor,
    folder: PreparedFolder,
    *,
    batch_size: int = 64,
    instrument: Mapping[str, float] | None = None,
    reject_rate: float | None = None,
    conformal_sets: str | None = None,
) -> pd.DataFrame:
    """One row per file of a prepared folder: ``file``, the model's output columns and ``error`` (see
    :func:`predict_files`; ``conformal_sets``: the served model's param of that name); ``folder`` is left as
    it was."""
    params: dict[str, Any] = {"bit_depth": "float"}
    if reject_rate is not None:
        params["reject_rate"] = float(reject_rate)
    if conformal_sets:
        params["conformal_sets"] = conformal_sets
    params |= {f"instrument_{key}": value for key, value in (instrument or {}).items()}
    rows = [dict(row) for row in folder.rows]
    good = folder.good
    for start in range(0, len(good), batch_size):
        chunk = good[start : start + batch_size]
        batch = np.stack([image for _, image in chunk]).astype(np.float32)
        try:
            predicted = model.predict(batch, params=params)
        except Exception as exc:  # keep going: the batch's rows carry the error
            for index, _ in chunk:
                rows[index]["error"] = f"{type(exc).__name__}: {exc}"
            continue
        for (index, _), record in zip(chunk, predicted.to_dict("records"), strict=True):
            rows[index].update(record)
    frame = pd.DataFrame(rows)
    first = ["file", "image_id"] if "image_id" in frame.columns else ["file"]
    ordered = [*first, *[c for c in frame.columns if c not in (*first, "error")], "error"]
    return frame[ordered]


def predict_files(
    model: Predictor,
    files: list[Path],
    in_chans: int,
    image_size: int,
    *,
    root: Path,
    batch_size: int = 64,
    bit_depth: int | None = None,
    bad_pixels: str = "none",
    instrument: Mapping[str, float] | None = None,
    reject_rate: float | None = None,
) -> pd.DataFrame:
    """One row per file: ``file`` (relative to ``root``), the model's output columns and ``error``.

    Each file is read and checked (``in_chans`` channels, square, at least ``image_size`` pixels: the model's
    training size) on its own; valid images are resized to ``image_size`` as training resized them and
    predicted in batches as I/I0 floats. ``bit_depth``: the
    true bit depth of 16-bit files (as ``data_source.options.bit_depth``). ``bad_pixels``: the model's bad-pixel
    correction, applied before the resize as in training. ``instrument``: the settings an instrument-conditioned
    model is told (``instrument_<setting>`` params; the model's typical instrument for any not given).
    ``reject_rate``: the unknown-material threshold's rate of rejected known images (None: the model's
    default); an image above it is answered ``unknown`` with its reason.
    """
    folder = prepare_folder(
        files, in_chans, image_size, root=root, bit_depth=bit_depth, bad_pixels=bad_pixels
    )
    return predict_prepared(
        model, folder, batch_size=batch_size, instrument=instrument, reject_rate=reject_rate
    )


def read_prepared(
    files: Sequence[Path | ListedImage],
    in_chans: int,
    image_size: int,
    *,
    root: Path,
    bit_depth: int | None = None,
    bad_pixels: str = "none",
) -> tuple[list[dict[str, Any]], list[tuple[int, np.ndarray]]]:
    """Read, check and prepare each file (or image a folder's ``metadata.csv`` lists: its ``image_id`` is kept)
    as the model takes it (see :func:`predict_files`).

    Returns:
        (rows, good): one ``{"file", "error"}`` row per file (``error`` set where the file cannot be used), and
        ``(row index, C x image_size x image_size float32 image)`` for each usable file.
    """
    rows: list[dict[str, Any]] = []
    good: list[tuple[int, np.ndarray]] = []
    for file in files:
        row: dict[str, Any] = (
            {"file": file.name, "image_id": file.image_id, "error": ""}
            if isinstance(file, ListedImage)
            else {"file": file.relative_to(root).as_posix(), "error": ""}
        )
        try:
            image = (
                file.read(bit_depth, grey_rgb=in_chans == 1)
                if isinstance(file, ListedImage)
                else read_image(file, bit_depth, grey_rgb=in_chans == 1)
            )
            if image.shape[0] != in_chans:
                raise ValueError(f"{image.shape[0]} channel(s), the model expects {in_chans}")
            check_resizable(image.shape[1], image.shape[2], image_size)
            problems = radiograph_problems(image[None], one_image=True)
            if problems:
                raise ValueError("; ".join(problems))
            resized = prepare_images(
                torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), image_size, bad_pixels
            )
            good.append((len(rows), resized.numpy()))
        except Exception as exc:  # one bad file must not stop the others
            row["error"] = f"{type(exc).__name__}: {exc}"
            logger.warning("inference: %s: %s", file, row["error"])
        rows.append(row)
    return rows, good


def failed_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``error`` is set."""
    errors = predictions["error"].fillna("").astype(str)
    return predictions[errors != ""]
