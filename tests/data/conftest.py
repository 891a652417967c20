"""Small synthetic metadata and images shared by the data-layer tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.constants import ALLOYS


def make_metadata(
    specimens_per_alloy: dict[str, int] | None = None, images_per_specimen: int = 2
) -> pd.DataFrame:
    """A valid metadata table: thickness 1, 2, 3, ... mm per specimen, absorption 2 / cm."""
    counts = specimens_per_alloy or dict.fromkeys(ALLOYS, 6)
    rows = [
        {
            "image_id": f"img-{alloy}-{s}-{k}",
            "specimen_id": f"spec-{alloy}-{s}",
            "alloy": alloy,
            "thickness_mm": 1.0 + s,
            "absorption": 2.0,
            "kv": "40,80",
            "source": "generated",
            "path": "",
        }
        for alloy, n in counts.items()
        for s in range(n)
        for k in range(images_per_specimen)
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def metadata() -> pd.DataFrame:
    """Five alloys x 6 specimens x 2 images (60 rows)."""
    return make_metadata()


@pytest.fixture
def images(metadata: pd.DataFrame) -> np.ndarray:
    """60 random 2 x 4 x 5 float32 images in [0, 1)."""
    return np.random.default_rng(0).random((len(metadata), 2, 4, 5), dtype=np.float32)
