"""The paired significance test and Delta-m on known cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.properties.stats import delta_m, paired_test, summarise


def test_paired_t_test_known_case() -> None:
    # differences 1..5: mean 3, sd sqrt(2.5), t = 3 / (sqrt(2.5) / sqrt(5)) = 4.2426, df 4, p = 0.01324
    a = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    t, p = paired_test(a, a - np.arange(1.0, 6.0))
    assert t == pytest.approx(4.242641, rel=1e-6)
    assert p == pytest.approx(0.0132356, rel=1e-4)


def test_paired_test_degenerate_cases() -> None:
    assert paired_test(np.ones(5), np.ones(5)) == (0.0, 1.0)
    t, p = paired_test(np.ones(5) + 0.1, np.ones(5))
    assert p == 0.0 and t > 0
    with pytest.raises(ValueError, match="equal length"):
        paired_test(np.ones(3), np.ones(4))


def test_delta_m_known_case() -> None:
    assert delta_m({"a": 0.9, "b": 0.5}, {"a": 1.0, "b": 0.5}) == pytest.approx(-5.0)
    assert delta_m({"a": 0.9}, {"a": 1.0}, {"a": True}) == pytest.approx(10.0)


def test_delta_m_leaves_out_a_task_whose_baseline_is_zero(caplog: pytest.LogCaptureFixture) -> None:
    assert delta_m({"a": 0.9, "f1": 0.4}, {"a": 1.0, "f1": 0.0}) == pytest.approx(-10.0)
    assert "f1 is 0" in caplog.text
    assert np.isnan(delta_m({"f1": 0.4}, {"f1": 0.0}))


def test_summary_pairs_seeds_against_the_baseline() -> None:
    rows = []
    for seed in range(3):
        rows += [
            {"configuration": "stl", "seed": seed, "task": "t", "metric": "r2", "value": 0.8 + 0.01 * seed},
            {"configuration": "mtl", "seed": seed, "task": "t", "metric": "r2", "value": 0.7 + 0.01 * seed + 0.001 * seed**2},
        ]  # fmt: skip
    summary = summarise(pd.DataFrame(rows), "stl", {"t": "r2"})
    mtl = summary[(summary["configuration"] == "mtl") & (summary["metric"] == "r2")].iloc[0]
    assert mtl["difference"] == pytest.approx(-0.1 + 0.001 * 5 / 3)
    assert mtl["p_value"] < 0.01
    dm = summary[summary["metric"] == "delta_m"].iloc[0]
    assert dm["mean"] < 0
