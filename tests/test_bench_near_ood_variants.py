"""benchmarks/bench_near_ood_variants.py: the boundary designations and the count against the ceilings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from alloy_mtl.physics.alloys import ALLOY_SPECS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench = pytest.importorskip("bench_near_ood_variants")


def test_each_boundary_designation_moves_one_element_outside_its_alloys_limits():
    designations = bench.boundary_designations()
    assert len({spec.name for spec in designations}) == len(designations) > 40
    for spec in designations:
        alloy, element = spec.name[:4], spec.name[5:]
        sign = spec.name[4]
        base = dict(ALLOY_SPECS[alloy].limits_wt_pct)
        low, high = base.get(element, (0.0, 0.0))
        moved_low, moved_high = spec.limits_wt_pct[element]
        if sign == "+":
            assert moved_low > high
        else:
            assert moved_high < low
        assert {k: v for k, v in spec.limits_wt_pct.items() if k != element} == {
            k: v for k, v in base.items() if k != element
        }
        assert 2.5 < spec.density_g_cm3 < 3.0


def test_more_zinc_makes_the_plate_denser_and_less_magnesium_too():
    by_name = {spec.name: spec for spec in bench.boundary_designations()}
    assert by_name["7075+Zn"].density_g_cm3 > ALLOY_SPECS["7075"].density_g_cm3
    assert by_name["5083-Mg"].density_g_cm3 > ALLOY_SPECS["5083"].density_g_cm3


def test_within_counts_designations_close_to_either_ceiling():
    results = {
        "ceilings": {"a": 0.9, "b": 0.9, "c": 0.9},
        "ceilings_nearest": {"a": 0.6, "b": 0.8, "c": 0.9},
        "per_seed": [
            {
                "v": {
                    "a": {"auroc": 0.87, "auroc_nearest": 0.5},
                    "b": {"auroc": 0.5, "auroc_nearest": 0.76},
                    "c": {"auroc": 0.5, "auroc_nearest": 0.6},
                }
            },
            {
                "v": {
                    "a": {"auroc": 0.85, "auroc_nearest": 0.5},
                    "b": {"auroc": 0.5, "auroc_nearest": 0.76},
                    "c": {"auroc": 0.5, "auroc_nearest": 0.6},
                }
            },
        ],
    }
    assert bench.within(results, "v") == (["a"], ["b"])
