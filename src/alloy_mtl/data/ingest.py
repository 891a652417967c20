"""Bring-your-own-data: read a folder of PNG/TIFF radiographs into :class:`XrayData` (nothing is written).

Two layouts are supported (``ingest_dataset(root, layout=...)``):

``"csv_folder"``
    ``root/metadata.csv`` with the data-contract columns; ``path`` is relative to ``root``. Required columns:
    ``image_id, specimen_id, alloy, path``; ``thickness_mm``, ``absorption`` (missing -> NaN) and ``kv``
    (missing -> "") are optional. One row per image. A row's ``path`` names either one file holding the
    whole image (grayscale -> 1 channel; multi-page or multi-sample TIFF, or RGB PNG -> one channel per
    page/sample) or one single-channel file per channel separated by ``";"`` (``"a_40kv.png;a_80kv.png"``),
    stacked in the order given.

``"class_per_folder"``
    ``root/{train,val,test}/<alloy>/*.png|*.tif|*.tiff`` or ``root/<alloy>/*`` without split folders. The
    alloy is the folder name; thickness and absorption are NaN; the split folder is kept in ``given_split``.
    ``specimen_id`` is ``"<alloy>/<stem>"`` (prefixed by the alloy so that equally named files of different
    alloys stay different specimens), or ``"<alloy>/<match>"`` where ``specimen_pattern`` is a regular
    expression searched in the stem (its first group, or the whole match when it has none).
    ``image_id`` is the file path relative to ``root`` without its suffix.

Pixels are scaled by bit depth (uint8 / 255, uint16 / 65535, floats kept) to float32. Every image must have
the shape of the first one and only finite pixels; a bad file raises :class:`DataValidationError` naming it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from alloy_mtl.constants import ALLOYS, METADATA_COLUMNS, SPLITS
from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.schema import validate_metadata
from alloy_mtl.data.store import XrayData

logger = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("csv_folder", "class_per_folder")
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
CHANNEL_SEPARATOR = ";"
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_PNG_MODES = ("L", "I;16", "I;16B", "I;16L", "RGB")


def ingest_dataset(root: str | Path, layout: str, **options: object) -> XrayData:
    """Read a dataset laid out as ``layout`` (``"csv_folder"`` or ``"class_per_folder"``) under ``root``.

    ``options`` go to :func:`ingest_csv_folder` or :func:`ingest_class_folders`.
    """
    if layout == "csv_folder":
        return ingest_csv_folder(root, **options)  # type: ignore[arg-type]
    if layout == "class_per_folder":
        return ingest_class_folders(root, **options)  # type: ignore[arg-type]
    raise ValueError(f"ingest_dataset: unknown layout {layout!r}; expected one of {list(LAYOUTS)}")


def ingest_csv_folder(
    root: str | Path,
    metadata_file: str = "metadata.csv",
    required_alloys: Iterable[str] | None = ALLOYS,
) -> XrayData:
    """Read ``root/metadata_file`` and the images its ``path`` column names (see the module docstring).

    Args:
        root: the dataset folder.
        metadata_file: CSV name inside ``root``.
        required_alloys: alloys that must have at least one image (``None``: no check).

    Raises:
        DataValidationError: bad metadata (every failure listed) or a bad image file (named).
    """
    root = Path(root)
    csv_path = root / metadata_file
    if not csv_path.is_file():
        raise DataValidationError(f"{csv_path}: metadata CSV not found")
    text_columns = {"image_id": str, "specimen_id": str, "alloy": str, "kv": str, "path": str}
    try:
        raw = pd.read_csv(csv_path, dtype=text_columns)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"{csv_path}: cannot parse CSV: {exc}") from exc
    missing = [c for c in ("image_id", "specimen_id", "alloy", "path") if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"{csv_path}: missing required column(s) {missing}; columns are {list(raw.columns)}"
        )
    metadata = raw.copy()
    for column in ("thickness_mm", "absorption"):
        if column not in metadata.columns:
            metadata[column] = np.nan
    metadata["kv"] = metadata["kv"].fillna("") if "kv" in metadata.columns else ""
    metadata["source"] = "ingested"
    files = [_split_paths(root, value) for value in metadata["path"].fillna("")]
    metadata["path"] = [CHANNEL_SEPARATOR.join(str(f) for f in group) for group in files]
    metadata = _ordered(metadata)
    metadata = validate_metadata(metadata, where=str(csv_path), required_alloys=required_alloys)
    for row, group in enumerate(files):
        if not group:
            raise DataValidationError(
                f"{csv_path}: row {row} (image_id={metadata['image_id'].iloc[row]}): empty path"
            )
    images = _read_all(files)
    return XrayData(images=images, metadata=metadata)


def ingest_class_folders(
    root: str | Path,
    specimen_pattern: str | None = None,
    kv: str = "",
    required_alloys: Iterable[str] | None = ALLOYS,
) -> XrayData:
    """Read ``root/[split/]<alloy>/*.png|tif|tiff`` (see the module docstring).

    Args:
        root: the dataset folder.
        specimen_pattern: regular expression searched in each file stem to derive the specimen (first
            group, or the whole match); ``None``: the stem itself.
        kv: value of the ``kv`` column for every image (the folder layout does not record it).
        required_alloys: alloys that must have at least one image (``None``: no check).

    Raises:
        DataValidationError: an unknown alloy or unexpected folder, a stem the pattern does not match,
            or a bad image file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError(f"{root}: dataset folder not found")
    folders = _subfolders(root)
    has_splits = any(p.name in SPLITS for p in folders)
    if has_splits:
        strays = [p.name for p in folders if p.name not in SPLITS]
        if strays:
            raise DataValidationError(
                f"{root}: folders {strays} are neither split folders {list(SPLITS)} nor allowed beside them"
            )
        alloy_folders = [(split.name, p) for split in folders for p in _subfolders(split)]
    else:
        alloy_folders = [(None, p) for p in folders]
    pattern = re.compile(specimen_pattern) if specimen_pattern else None
    rows, files = [], []
    for split, folder in alloy_folders:
        if folder.name not in ALLOYS:
            raise DataValidationError(
                f"{folder}: unknown alloy folder {folder.name!r}; allowed alloys are {list(ALLOYS)}"
            )
        for file in sorted(folder.iterdir()):
            if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rows.append(
                {
                    "image_id": file.relative_to(root).with_suffix("").as_posix(),
                    "specimen_id": f"{folder.name}/{_specimen(file, pattern)}",
                    "alloy": folder.name,
                    "thickness_mm": np.nan,
                    "absorption": np.nan,
                    "kv": kv,
                    "source": "ingested",
                    "path": str(file),
                    **({"given_split": split} if has_splits else {}),
                }
            )
            files.append([file])
    if not rows:
        raise DataValidationError(f"{root}: no {'/'.join(IMAGE_SUFFIXES)} images found in alloy folders")
    metadata = validate_metadata(pd.DataFrame(rows), where=str(root), required_alloys=required_alloys)
    return XrayData(images=_read_all(files), metadata=metadata)


def read_image(path: str | Path) -> np.ndarray:
    """Read one PNG or TIFF file as a float32 C x H x W array scaled to [0, 1] by bit depth.

    Raises:
        DataValidationError: the file is missing, unreadable or corrupt, has an unsupported pixel type,
            or holds NaN/inf pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: image file not found")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            array = _read_tiff(path)
        else:
            array = _read_pil(path)
    except DataValidationError:
        raise
    except Exception as exc:  # Pillow and tifffile raise many unrelated types for a corrupt file
        raise DataValidationError(
            f"{path}: unreadable or corrupt image file ({type(exc).__name__}: {exc})"
        ) from exc
    if array.dtype in _SCALE:
        scaled = array.astype(np.float32) / np.float32(_SCALE[array.dtype])
    elif np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float32)
    else:
        raise DataValidationError(
            f"{path}: unsupported pixel type {array.dtype}; expected uint8, uint16 or float"
        )
    n_bad = int(np.count_nonzero(~np.isfinite(scaled)))
    if n_bad:
        raise DataValidationError(f"{path}: {n_bad} NaN/inf pixel(s); every pixel must be finite")
    return scaled


def _read_pil(path: Path) -> np.ndarray:
    """A PNG (or other Pillow format) as C x H x W in its stored dtype."""
    with Image.open(path) as image:
        if image.mode not in _PNG_MODES:
            raise DataValidationError(
                f"{path}: unsupported image mode {image.mode!r}; expected one of {list(_PNG_MODES)}"
            )
        array = np.asarray(image)
    if array.ndim == 2:
        return array[None]
    return np.moveaxis(array, -1, 0)


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's first series as C x H x W: every axis other than Y and X (pages, samples) becomes a channel."""
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise DataValidationError(f"{path}: unreadable or corrupt TIFF (no image data)")
        series = tif.series[0]
        array, axes = series.asarray(), series.axes
    if "Y" not in axes or "X" not in axes:
        raise DataValidationError(f"{path}: TIFF axes {axes!r} have no Y/X plane")
    array = np.moveaxis(array, (axes.index("Y"), axes.index("X")), (-2, -1))
    return array.reshape(-1, *array.shape[-2:])


def _read_all(files: Sequence[Sequence[Path]]) -> np.ndarray:
    """Read every image (its channel files stacked) into one N x C x H x W float32 array of a common shape."""
    images: np.ndarray | None = None
    first = ""
    for i, group in enumerate(files):
        image = np.concatenate([_read_channel(f, several=len(group) > 1) for f in group], axis=0)
        name = CHANNEL_SEPARATOR.join(str(f) for f in group)
        if images is None:
            images, first = np.empty((len(files), *image.shape), dtype=np.float32), name
        elif image.shape != images.shape[1:]:
            raise DataValidationError(
                f"{name}: image shape {image.shape} (C, H, W) differs from the expected shape "
                f"{images.shape[1:]} set by {first}; all images must share one shape"
            )
        images[i] = image
    logger.info("Ingested %d images of shape %s", len(files), None if images is None else images.shape[1:])
    return images if images is not None else np.empty((0, 1, 1, 1), dtype=np.float32)


def _read_channel(path: Path, several: bool) -> np.ndarray:
    """One file; when the image is split into per-channel files each must hold exactly one channel."""
    image = read_image(path)
    if several and image.shape[0] != 1:
        raise DataValidationError(f"{path}: a per-channel file must hold one channel, found {image.shape[0]}")
    return image


def _split_paths(root: Path, value: str) -> list[Path]:
    """The files of a CSV ``path`` cell (``;``-separated for per-channel files), relative to ``root``."""
    return [root / part.strip() for part in value.split(CHANNEL_SEPARATOR) if part.strip()]


def _subfolders(folder: Path) -> list[Path]:
    """Sorted sub-folders, hidden ones (``.ipynb_checkpoints``) skipped."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _specimen(file: Path, pattern: re.Pattern[str] | None) -> str:
    """The specimen part of a file's id (see :func:`ingest_class_folders`)."""
    if pattern is None:
        return file.stem
    match = pattern.search(file.stem)
    if match is None:
        raise DataValidationError(
            f"{file}: specimen_pattern {pattern.pattern!r} does not match the stem {file.stem!r}"
        )
    return match.group(1) if pattern.groups else match.group(0)


def _ordered(metadata: pd.DataFrame) -> pd.DataFrame:
    """Contract columns first, extra CSV columns after them."""
    extra = [c for c in metadata.columns if c not in METADATA_COLUMNS]
    return metadata[[c for c in METADATA_COLUMNS if c in metadata.columns] + extra]
