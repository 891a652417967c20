"""Kedro dataset: a CSV table another pipeline wrote, read if it is there (None if not); never written."""

from __future__ import annotations

from typing import Any

import pandas as pd

from alloy_mtl.datasets.optional_json_dataset import OptionalJSONDataset


class OptionalCSVDataset(OptionalJSONDataset):
    """Reads ``filepath`` as a CSV table, or None when the file does not exist (read-only)."""

    def load(self) -> Any:
        if not self._filepath.exists():
            return None
        return pd.read_csv(self._filepath)
