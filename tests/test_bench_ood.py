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


def test_knn_score_is_low_inside_the_reference_and_high_outside_it_whatever_a_features_scale():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(500, 2)) * np.array([1.0, 1000.0])  # the second feature in other units
    inside, outside = np.array([[0.0, 0.0]]), np.array([[0.0, 5000.0]])  # 5 spreads out along the second
    scores = bench.knn_score(reference, np.vstack([inside, outside]), k=10)
    assert scores[1] > 10 * scores[0]
    assert bench.knn_score(reference, reference[:5], k=1).max() == pytest.approx(0.0)  # its own nearest
