"""Each physical law of the generated data on a hand-checked case."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alloy_mtl.properties import laws
from alloy_mtl.properties.elements import ELEMENTS, element_table


def test_wiedemann_franz_gives_copper_resistivity() -> None:
    # 2.44e-8 * 293.15 / 401 ohm m = 1.784 micro-ohm cm (measured 1.68)
    assert laws.wiedemann_franz_resistivity(np.array([401.0]))[0] == pytest.approx(1.7838, rel=1e-3)


def test_nordheim_matthiessen_adds_c_x_one_minus_x() -> None:
    rho = laws.nordheim_matthiessen(np.array([2.0]), np.array([[0.1, 0.0]]), np.array([[100.0, 50.0]]))
    assert rho[0] == pytest.approx(2.0 + 100.0 * 0.1 * 0.9)
    # Linde-type coefficient: c0 + c_phi dphi^2 + c_size delta^2
    assert laws.nordheim_coefficient(np.array(0.5), np.array(0.1)) == pytest.approx(
        20 + 300 * 0.25 + 2000 * 0.01
    )


def test_saturation_is_a_parallel_resistor() -> None:
    assert laws.saturated_resistivity(np.array([150.0]), rho_sat=150.0)[0] == pytest.approx(75.0)
    assert laws.saturated_resistivity(np.array([1.0]))[0] == pytest.approx(1.0, rel=1e-2)


def test_shear_modulus_from_melting_point() -> None:
    omega = laws.atomic_volume(np.array([63.546]), np.array([8.96]))  # copper: 1.178e-29 m3
    assert omega[0] == pytest.approx(1.1777e-29, rel=1e-3)
    shear = laws.shear_modulus(np.array([1357.77]), omega, alpha=35.0)[0]
    assert shear == pytest.approx(35 * 1.380649e-23 * 1357.77 / 1.1777e-29 * 1e-6, rel=1e-3)
    assert 40e3 < shear < 70e3  # measured 48 GPa


def test_labusch_gypen_deruyttere_single_solute() -> None:
    eps = laws.labusch_misfit(np.array([0.0]), np.array([0.05]))
    assert eps[0] == pytest.approx(0.8)  # 16 * 0.05
    sigma = laws.solid_solution_strengthening(np.array([50e3]), eps[None, :], np.array([[0.1]]), z=550.0)
    assert sigma[0] == pytest.approx(3.06 * 50e3 / 550 * (0.64 * 0.1) ** (2 / 3))
    # eta' = eta / (1 + |eta|/2)
    assert laws.labusch_misfit(np.array([1.0]), np.array([0.0]))[0] == pytest.approx(2 / 3)


def test_hume_rothery_solubility() -> None:
    assert laws.solubility_limit(np.array(0.0), np.array(0.0)) == pytest.approx(0.25)
    assert laws.solubility_limit(np.array(0.15), np.array(0.0)) == pytest.approx(
        0.25 * math.exp(-((0.15 / 0.08) ** 2))
    )


def test_orowan_strengthening_hand_value() -> None:
    f, r, b, g = 0.1, 50e-9, 2.5e-10, 50e3
    spacing = 2 * r * (math.sqrt(math.pi / (4 * f)) - 1)
    expected = 3.06 * 0.4 * g * b * math.log(2 * r / b) / (math.pi * math.sqrt(0.7) * spacing)
    value = laws.orowan_strengthening(np.array([g]), np.array([b]), np.array([f]), radius=r)[0]
    assert value == pytest.approx(expected)
    assert laws.orowan_strengthening(np.array([g]), np.array([b]), np.array([0.0]))[0] == 0.0


def test_tabor_hardness() -> None:
    assert laws.tabor_vickers(np.array([300.0]))[0] == pytest.approx(900 / 9.80665)


def test_size_mismatch_hand_value() -> None:
    radii = np.array([1.0, 2.0])
    assert laws.size_mismatch(np.array([[0.5, 0.5]]), radii)[0] == pytest.approx(100 / 3)
    assert laws.size_mismatch(np.array([[0.3, 0.7]]), np.array([1.0, 1.0]))[0] == pytest.approx(0.0)


def test_miedema_pairs_match_takeuchi_inoue_table() -> None:
    table = element_table()
    hybrid = np.array([laws.MIEDEMA_R.get(s, 0.0) for s in ELEMENTS])
    pairs = laws.miedema_pair_enthalpy(
        table["phi"].to_numpy(), table["nws13"].to_numpy(), table["molar_volume"].to_numpy(),
        table["transition_metal"].to_numpy(), hybrid,
    )  # fmt: skip
    index = {s: i for i, s in enumerate(ELEMENTS)}
    # Takeuchi and Inoue 2005: Cu-Zr -23, Ni-Zr -49, Al-Ni -22, Cu-Ni +4 kJ/mol
    for a, b, tabulated in (("Cu", "Zr", -23), ("Ni", "Zr", -49), ("Al", "Ni", -22), ("Cu", "Ni", 4)):
        assert pairs[index[a], index[b]] == pytest.approx(tabulated, abs=3.0)
        assert pairs[index[a], index[b]] == pytest.approx(pairs[index[b], index[a]])
    # equiatomic binary: dH_mix = 4 dH_AB / 4 = dH_AB
    x = np.zeros((1, len(ELEMENTS)))
    x[0, [index["Cu"], index["Zr"]]] = 0.5
    assert laws.mixing_enthalpy(x, pairs)[0] == pytest.approx(pairs[index["Cu"], index["Zr"]])


def test_glass_forming_logit_is_zero_at_the_limits() -> None:
    assert laws.glass_forming_logit(np.array([9.0]), np.array([-22.0]), np.array([3]))[0] == pytest.approx(
        0.0
    )
    assert laws.glass_forming_logit(np.array([12.0]), np.array([-40.0]), np.array([5]))[0] > 0
    assert laws.glass_forming_logit(np.array([2.0]), np.array([0.0]), np.array([2]))[0] < 0
