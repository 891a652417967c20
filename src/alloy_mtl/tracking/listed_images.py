"""A folder to predict whose ``metadata.csv`` lists its images, as a lab stores them for the ingest: one row per
image, ``path`` naming its file or its per-channel files joined by ``;`` (``w01_40kv.png;w01_50kv.png;...``),
relative to the folder. Labels are not needed; ``image_id`` is optional (default: the ``path`` cell).

A row that cannot be used (empty ``path``, a file missing, a path or symlink leading outside the folder, a
per-channel file holding more than one channel) gets its reason, and the other rows are still predicted. A folder
without a listing is read file by file (:func:`image_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alloy_mtl.data.ingest import (
    CHANNEL_SEPARATOR,
    IMAGE_SUFFIXES,
    load_channel_files,
    outside_folder_problem,
    split_paths,
)
from alloy_mtl.data.params import IngestOptions

METADATA_FILE = IngestOptions().metadata_file
"""The listing a folder to predict may carry (the same file name as a ``csv_folder`` lab folder)."""


@dataclass(frozen=True)
class ListedImage:
    """One row of a folder's ``metadata.csv``."""

    name: str
    """The row's ``path`` cell as written: what the predictions' ``file`` column shows."""
    image_id: str
    files: tuple[Path, ...]
    problem: str = ""
    """Why the row cannot be read ("" where it can)."""

    def read(self, bit_depth: int | None, grey_rgb: bool) -> np.ndarray:
        """The image, C x H x W float32: its file, or its per-channel files stacked in the listed order.

        Raises:
            ValueError: the row's :attr:`problem`.
            DataValidationError: a file the reader refuses (missing, corrupt, beyond ``bit_depth``, ...) or a
                per-channel file holding more than one channel.
        """
        if self.problem:
            raise ValueError(self.problem)
        loaded = load_channel_files(self.files, bit_depth, grey_rgb=grey_rgb)
        return np.concatenate([image.pixels for image in loaded], axis=0)


def has_listing(folder: Path) -> bool:
    """Whether ``folder`` carries a ``metadata.csv`` listing its images."""
    return (folder / METADATA_FILE).is_file()


def listed_images(folder: Path, parameter: str = "inference.input") -> list[ListedImage]:
    """The images ``folder/metadata.csv`` lists, in its row order.

    Raises:
        ValueError: the CSV cannot be parsed, has no ``path`` column or no row, naming the file and the setting.
    """
    csv_path = folder / METADATA_FILE
    where = f"parameters {parameter}: {csv_path}"
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ValueError(f"{where}: cannot parse CSV: {exc}") from exc
    if "path" not in table.columns:
        raise ValueError(
            f"{where}: no 'path' column (the image file, or its per-channel files joined by "
            f"'{CHANNEL_SEPARATOR}'); columns are {list(table.columns)}"
        )
    if table.empty:
        raise ValueError(f"{where}: lists no image")
    images = []
    for row, record in enumerate(table.to_dict("records")):
        cell = str(record["path"]).strip()
        files = tuple(split_paths(folder, cell))
        problem = outside_folder_problem(files, folder) if files else f"{METADATA_FILE} row {row}: empty path"
        image_id = str(record.get("image_id") or "").strip() or cell
        images.append(ListedImage(cell or f"{METADATA_FILE} row {row}", image_id, files, problem))
    return images


def image_files(folder: Path, recursive: bool = False, parameter: str = "inference.input") -> list[Path]:
    """PNG/TIFF files of ``folder`` (sorted); ``parameter``: the setting that named the folder, for the message.

    Raises:
        ValueError: the folder holds none.
    """
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"parameters {parameter}: '{folder}' holds no {'/'.join(IMAGE_SUFFIXES)} files")
    return files
