"""Coverage of conformal sets and intervals measured on a model's predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.evaluation.conformal import conformal_coverage, conformal_markdown

CLASSES = ["1050", "2017"]
FITTED = {"coverage": 0.9, "class_quantiles": [0.5, 0.7], "half_widths": {"thickness": 1.0}}


def _predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "alloy_true": ["1050", "1050", "2017", "2017"],
            "prob_1050": [0.8, 0.4, 0.2, 0.5],  # 1050 in the set when p >= 0.5
            "prob_2017": [0.2, 0.6, 0.8, 0.5],  # 2017 in the set when p >= 0.3
            "thickness_mm_true": [1.0, 2.0, 3.0, np.nan],
            "thickness_mm_pred": [1.5, 3.5, 3.0, 9.0],
        }
    )


def test_coverage_per_class_set_sizes_and_interval_coverage():
    report = conformal_coverage(_predictions(), FITTED, CLASSES, {"thickness": "thickness_mm"})
    assert report["per_class"]["1050"] == {"coverage": 0.5, "mean_set_size": 1.0, "n": 2}
    assert report["per_class"]["2017"]["coverage"] == 1.0
    assert report["coverage"] == 0.75
    assert report["mean_set_size"] == pytest.approx((1 + 1 + 1 + 2) / 4)
    assert report["empty_sets"] == 0.0
    assert report["intervals"]["thickness"] == {"half_width": 1.0, "coverage": pytest.approx(2 / 3)}
    assert conformal_coverage(_predictions(), {}, CLASSES, {}) == {}
    lines = conformal_markdown({"fnn": report, "old": {}}, "test split")
    assert lines[0] == "## Conformal sets and intervals (test split)"
    assert "| fnn | 0.750 | 1.25 | 0.500 | 1.000 | 0.667 (+-1) |" in lines
    assert conformal_markdown({"old": {}}, "x") == []
