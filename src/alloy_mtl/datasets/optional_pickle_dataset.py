"""Kedro dataset: a pickle another pipeline wrote, read if it is there (None if not); never written."""

from __future__ import annotations

import pickle
from typing import Any

from alloy_mtl.datasets.optional_json_dataset import OptionalJSONDataset


class OptionalPickleDataset(OptionalJSONDataset):
    """Reads ``filepath`` as a pickle, or None when the file does not exist (read-only). Only the project's own
    pipelines write the file: unpickling runs code, so never point it at a file from elsewhere."""

    def load(self) -> Any:
        if not self._filepath.exists():
            return None
        with self._filepath.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 (the project's own artifact, see the class docstring)
