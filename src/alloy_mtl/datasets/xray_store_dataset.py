"""Kedro dataset over the consolidated, memory-mapped X-ray array store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from alloy_mtl.data.store import XrayData, open_store, write_store


class XrayStoreDataset(AbstractDataset[XrayData, XrayData]):
    """A directory holding ``images.npy`` (memory-mapped on load) and ``metadata.parquet``.

    Loading never reads the images into RAM; saving writes chunk-wise into a temporary sibling
    directory that replaces the target only once complete, so a failed save leaves the old store intact.

    Example catalog entry::

        model_input:
          type: alloy_mtl.datasets.XrayStoreDataset
          path: data/05_model_input/xray
          dtype: float16
    """

    def __init__(
        self, path: str, dtype: str = "float16", chunk_size: int = 256, metadata: dict | None = None
    ):
        self._path = Path(path)
        self._dtype = dtype
        self._chunk_size = chunk_size
        self.metadata = metadata

    def load(self) -> XrayData:
        if not self._path.exists():
            raise DatasetError(
                f"X-ray store '{self._path}' does not exist; run the pipeline that creates it."
            )
        return open_store(self._path)

    def save(self, data: XrayData) -> None:
        if not isinstance(data, XrayData):
            raise DatasetError(
                f"XrayStoreDataset '{self._path}' expects XrayData, got {type(data).__name__}."
            )
        write_store(data, self._path, dtype=self._dtype, chunk_size=self._chunk_size)

    def _exists(self) -> bool:
        return (self._path / "images.npy").exists() and (self._path / "metadata.parquet").exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "dtype": self._dtype}
