"""The consolidated array store: ``images.npy`` (memory-mapped) plus ``metadata.parquet`` in one directory."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

IMAGES_FILE = "images.npy"
METADATA_FILE = "metadata.parquet"


@dataclass
class XrayData:
    """Images (N x C x H x W) with their metadata, one row per image in the same order."""

    images: np.ndarray
    metadata: pd.DataFrame

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"XrayData.images must be 4-D (N, C, H, W), got shape {self.images.shape}")
        if len(self.images) != len(self.metadata):
            raise ValueError(
                f"XrayData: {len(self.images)} images but {len(self.metadata)} metadata rows; they must match"
            )

    def __len__(self) -> int:
        return len(self.images)


def write_store(data: XrayData, directory: str | Path, dtype: str = "float16", chunk_size: int = 256) -> Path:
    """Write ``data`` as a consolidated store at ``directory`` atomically.

    Images are copied chunk by chunk into ``images.npy`` through ``np.lib.format.open_memmap``, so a
    memory-mapped source is never loaded whole. Everything is written into a temporary sibling directory
    that replaces ``directory`` only once complete: a failure leaves any previous store untouched.

    Args:
        data: images and metadata to store.
        directory: target store directory (created or replaced).
        dtype: on-disk image dtype (``"float16"`` by default, ``"float32"`` for full precision).
        chunk_size: images copied per chunk.

    Returns:
        The store directory.
    """
    if chunk_size < 1:
        raise ValueError(f"write_store: chunk_size must be >= 1, got {chunk_size}")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private (0700); a store is shared like any data folder
    try:
        out = np.lib.format.open_memmap(
            tmp / IMAGES_FILE, mode="w+", dtype=np.dtype(dtype), shape=data.images.shape
        )
        for start in range(0, len(data.images), chunk_size):
            out[start : start + chunk_size] = data.images[start : start + chunk_size]
        out.flush()
        del out
        data.metadata.reset_index(drop=True).to_parquet(tmp / METADATA_FILE, index=False)
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Wrote store %s: %d images %s as %s", directory, len(data), data.images.shape[1:], dtype)
    return directory


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is moved aside first and deleted once replaced."""
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def open_store(directory: str | Path) -> XrayData:
    """Open a store written by :func:`write_store`; images are a read-only ``np.memmap`` (nothing loaded).

    Raises:
        FileNotFoundError: the directory, ``images.npy`` or ``metadata.parquet`` is missing.
        ValueError: a file is unreadable or the two files disagree on the number of images.
    """
    directory = Path(directory)
    images_path, metadata_path = directory / IMAGES_FILE, directory / METADATA_FILE
    for path in (images_path, metadata_path):
        if not path.is_file():
            raise FileNotFoundError(f"Array store {directory}: missing file {path}")
    try:
        images = np.load(images_path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(
            f"Array store {directory}: cannot read {images_path} as a .npy array: {exc}"
        ) from exc
    try:
        metadata = pd.read_parquet(metadata_path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise ValueError(f"Array store {directory}: cannot read {metadata_path} as parquet: {exc}") from exc
    try:
        return XrayData(images=images, metadata=metadata)
    except ValueError as exc:
        raise ValueError(f"Array store {directory}: {exc}") from exc
