"""benchmarks/bench_ood.py's near-OOD ceiling: a classifier told the designation, scored out of fold."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench = pytest.importorskip("bench_ood")


def test_separability_is_high_for_a_shifted_designation_and_near_chance_for_a_twin():
    rng = np.random.default_rng(0)
    known = rng.normal(size=(300, 4))
    shifted = rng.normal(size=(60, 4)) + np.array([3.0, 0, 0, 0])
    twin = rng.normal(size=(60, 4))
    meta = pd.DataFrame(
        {
            "family": ["near"] * 120,
            "material": ["shifted"] * 60 + ["twin"] * 60,
            "specimen_id": [f"s{i // 3}" for i in range(120)],
        }
    )
    ceilings = bench.separability(
        known,
        np.vstack([shifted, twin]),
        np.array([f"k{i // 3}" for i in range(300)]),
        meta,
        folds=3,
        max_iter=20,
    )
    assert set(ceilings) == {"shifted", "twin"}
    assert ceilings["shifted"] > 0.95
    assert abs(ceilings["twin"] - 0.5) < 0.15
