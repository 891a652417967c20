"""Attenuation of compositions from xraydb: Beer-Lambert and the weight-fraction mixing rule."""

from __future__ import annotations

import numpy as np
import pytest
import xraydb

from alloy_mtl.physics.alloys import get_alloy, nominal_composition
from alloy_mtl.physics.attenuation import linear_attenuation, mass_attenuation
from alloy_mtl.physics.simulator import SimulationConfig, channel_weights


def test_pure_aluminium_transmission_matches_xraydb() -> None:
    energy_kev, thickness_cm, density = 30.0, 0.2, 2.699
    mu = linear_attenuation({"Al": 1.0}, density, [energy_kev])[0]
    expected = np.exp(-xraydb.mu_elam("Al", energy_kev * 1000.0) * density * thickness_cm)
    assert np.exp(-mu * thickness_cm) == pytest.approx(expected, rel=0.01)


def test_mixing_rule_two_elements() -> None:
    energies = np.array([20.0, 50.0])
    mu_al = np.array([xraydb.mu_elam("Al", e * 1000.0) for e in energies])
    mu_cu = np.array([xraydb.mu_elam("Cu", e * 1000.0) for e in energies])
    mixed = mass_attenuation({"Al": 0.25, "Cu": 0.75}, energies)
    np.testing.assert_allclose(mixed, 0.25 * mu_al + 0.75 * mu_cu, rtol=1e-12)
    # copper attenuates far more than aluminium, so the mixture sits well above pure Al
    assert np.all(mixed > 3 * mu_al)


def test_invalid_composition_and_energies_raise() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        mass_attenuation({"Al": 0.5, "Cu": 0.3}, [30.0])
    with pytest.raises(ValueError, match="positive"):
        mass_attenuation({"Al": 1.0}, [-1.0])
    with pytest.raises(ValueError, match="density"):
        linear_attenuation({"Al": 1.0}, 0.0, [30.0])


def test_heavy_alloys_attenuate_more_than_1050_at_50kv() -> None:
    config = SimulationConfig(kv=(50.0,))
    weights = channel_weights(config, [50.0])
    thickness_cm = 0.3

    def transmission(alloy: str) -> float:
        mu = linear_attenuation(
            nominal_composition(alloy), get_alloy(alloy).density_g_cm3, weights.energies_kev
        )
        return float(np.exp(-mu * thickness_cm) @ weights.mean[0])

    t_1050 = transmission("1050")
    assert transmission("2017") < 0.9 * t_1050
    assert transmission("7075") < 0.85 * t_1050
