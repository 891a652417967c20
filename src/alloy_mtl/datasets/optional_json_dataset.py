"""Kedro dataset: a JSON file another pipeline wrote, read if it is there (None if not); never written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class OptionalJSONDataset(AbstractDataset[Any, Any]):
    """Reads ``filepath`` as JSON, or None when the file does not exist (read-only)."""

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> Any:
        if not self._filepath.exists():
            return None
        return json.loads(self._filepath.read_text())

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._filepath}: read-only here; the pipeline that owns it writes it")

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
