"""Kedro dataset for a trained model bundle (state dict + everything needed to rebuild it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from kedro.io import AbstractDataset, DatasetError


class TorchBundleDataset(AbstractDataset[dict, dict]):
    """A ``dict`` saved with ``torch.save`` atomically (temporary file, then rename).

    The bundle holds tensors and plain Python values only, so it loads with ``weights_only=True``.
    ``missing_ok``: a missing file loads as an empty dict (an architecture that was not trained) instead of
    failing; for pipelines that score whatever was trained.
    """

    def __init__(self, filepath: str, metadata: dict | None = None, missing_ok: bool = False):
        self._filepath = Path(filepath)
        self.metadata = metadata
        self._missing_ok = missing_ok

    def load(self) -> dict:
        if not self._filepath.exists():
            if self._missing_ok:
                return {}
            raise DatasetError(f"Model bundle '{self._filepath}' does not exist; train the model first.")
        return torch.load(self._filepath, map_location="cpu", weights_only=True)

    def save(self, data: dict) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self._filepath.parent, prefix=f".{self._filepath.name}.", suffix=".tmp"
        )
        os.close(fd)
        try:
            torch.save(data, tmp)
            os.replace(tmp, self._filepath)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "missing_ok": self._missing_ok}
