"""Alloy designations, nominal compositions and within-range sampling."""

from __future__ import annotations

import numpy as np
import pytest

from alloy_mtl.constants import ALLOYS
from alloy_mtl.physics.alloys import (
    ALLOY_SPECS,
    get_alloy,
    nominal_composition,
    sample_composition,
    specimen_density,
)


def test_specs_cover_alloys_with_handbook_densities() -> None:
    assert tuple(ALLOY_SPECS) == ALLOYS
    assert get_alloy("7075").density_g_cm3 == pytest.approx(2.81)
    assert get_alloy("5083").limits_wt_pct["Mg"] == (4.0, 4.9)


@pytest.mark.parametrize("alloy", ALLOYS)
def test_samples_inside_designation_ranges(alloy: str) -> None:
    rng = np.random.default_rng(0)
    spec = get_alloy(alloy)
    for spread in (0.5, 1.0, 3.0):
        for _ in range(100):
            comp = sample_composition(alloy, rng, spread)
            assert sum(comp.values()) == pytest.approx(1.0, abs=1e-12)
            for element, (low, high) in spec.limits_wt_pct.items():
                assert low / 100 - 1e-12 <= comp[element] <= high / 100 + 1e-12, (
                    alloy,
                    element,
                    comp[element],
                )
            assert comp["Al"] >= spec.al_min_wt_pct / 100 - 1e-12


def test_samples_spread_and_nominal() -> None:
    rng = np.random.default_rng(1)
    zinc = [sample_composition("7075", rng)["Zn"] for _ in range(300)]
    assert np.std(zinc) > 0.0005  # a class has real spread
    assert np.mean(zinc) == pytest.approx(0.056, abs=0.002)  # centred mid-range (5.1-6.1 %)
    assert sample_composition("7075", rng, spread=0.0) == pytest.approx(nominal_composition("7075"))
    assert nominal_composition("2017")["Cu"] == pytest.approx(0.04)


def test_density_follows_composition() -> None:
    nominal = nominal_composition("5083")
    assert specimen_density("5083", nominal) == pytest.approx(2.66)
    more_mg = dict(nominal, Mg=nominal["Mg"] + 0.004, Al=nominal["Al"] - 0.004)
    assert specimen_density("5083", more_mg) < 2.66  # Mg is lighter than Al


def test_unknown_alloy_raises_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'6061'.*1050, 2017, 5083, 6082, 7075"):
        sample_composition("6061", np.random.default_rng(0))
