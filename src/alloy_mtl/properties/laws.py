"""The physical laws behind the generated alloy-property data. Plain numpy; each law names its source.

Compositions are atomic fractions. Units: resistivity in micro-ohm centimetres, stresses in MPa, shear moduli
in MPa, hardness in HV (kgf/mm2), enthalpies in kJ/mol, size mismatch in percent.

Resistivity
    * Wiedemann-Franz law (Wiedemann and Franz 1853; Lorenz number L0 = 2.44e-8 W ohm/K2): a pure metal's
      resistivity from its thermal conductivity, ``rho = L0 T / kappa`` (Cu: 1.78 vs 1.68 measured).
    * Matthiessen's rule (Matthiessen 1864): independent scattering contributions add.
    * Nordheim's rule (Nordheim 1931): the residual resistivity of a solute at fraction x is ``C x (1 - x)``.
      Nordheim coefficient ``C = c0 + c_phi dphi^2 + c_size delta^2`` grows with the square of the solute's
      scattering potential (Linde's rule, Linde 1932, with Miedema's phi* difference as the charge-difference
      proxy) and of its size misfit (strain scattering). Cu-Ni: C about 190 micro-ohm cm (measured 110-190).
    * Resistivity saturation (Mooij 1973; parallel-resistor model of Wiesmann et al. 1977):
      ``1/rho = 1/rho_ideal + 1/rho_sat`` with rho_sat about 150 micro-ohm cm.
Hardness
    * Shear modulus from the melting point (Frost and Ashby 1982, ch. 2: G Omega / (k T_m) is nearly constant,
      about 30-50 for metals): ``G = alpha k T_m / Omega``.
    * Solid-solution strengthening: Labusch 1970 (``tau = G eps^(4/3) c^(2/3) / Z``, misfit
      ``eps = sqrt(eta'^2 + (16 delta)^2)``, ``eta' = eta / (1 + |eta|/2)``), summed over solutes by
      Gypen and Deruyttere 1977 (``sigma = (sum_i k_i^(3/2) c_i)^(2/3)``), times the Taylor factor M = 3.06.
    * Solubility limit: Hume-Rothery rules (Hume-Rothery 1934; Darken-Gurry map): solubility falls steeply
      beyond 15 % size misfit and with the electronegativity difference; we use Gaussian factors.
    * Precipitation strengthening of the solute beyond the solubility limit: Orowan bowing in the Ashby-Orowan
      form (Gladman 1999): ``M 0.4 G b ln(2 r / b) / (pi sqrt(1 - nu) lambda)``,
      ``lambda = 2 r (sqrt(pi / (4 f)) - 1)``.
    * Hardness from the yield stress: Tabor 1951, ``H = 3 sigma_y`` (HV = 3 sigma_y / 9.807 in kgf/mm2).
Amorphous-forming ability
    * Atomic size mismatch ``delta = 100 sqrt(sum c_i (1 - r_i / r_mean)^2)`` (Zhang et al. 2008).
    * Mixing enthalpy ``dH_mix = sum_{i<j} 4 dH_ij c_i c_j`` (Takeuchi and Inoue 2005) with the equiatomic pair
      enthalpies ``dH_ij`` from Miedema's model (de Boer et al. 1988): Cu-Zr -22 (tabulated -23), Al-Ni -23
      (tabulated -22) kJ/mol.
    * Inoue's empirical rules (Inoue 2000): three or more components, size mismatch above about 12 % between
      the main elements, negative mixing enthalpy. Zhang et al. 2008 place solid solutions at delta <= 6.6 %
      and dH_mix >= -15 kJ/mol; Guo et al. 2013 find the amorphous phase beyond about delta 9 % and
      dH_mix -20 to -25 kJ/mol. :func:`glass_forming_logit` measures the distance beyond delta 9 % and
      -22 kJ/mol and adds the number of components.
"""

from __future__ import annotations

import numpy as np

LORENZ_NUMBER = 2.44e-8  # W ohm / K^2
BOLTZMANN = 1.380649e-23  # J/K
AVOGADRO = 6.02214076e23  # 1/mol
TAYLOR_FACTOR = 3.06
STANDARD_GRAVITY = 9.80665  # MPa per kgf/mm2

#: Miedema's hybridisation parameters r (R/P = 0.73 r_TM r_p, r_TM = 1) of the p- and s-metals used here;
#: approximate values after Niessen et al. 1983, checked against Al-Ni (see module docstring).
MIEDEMA_R: dict[str, float] = {"Al": 1.9, "Si": 2.1, "B": 1.9, "Mg": 0.4, "Zn": 1.4}


def wiedemann_franz_resistivity(thermal_conductivity: np.ndarray, temperature: float = 293.15) -> np.ndarray:
    """Electronic resistivity (micro-ohm cm) of a pure metal from its thermal conductivity (W/(m K))."""
    kappa = np.asarray(thermal_conductivity, dtype=np.float64)
    return LORENZ_NUMBER * temperature / kappa * 1e8


def nordheim_coefficient(
    dphi: np.ndarray, misfit: np.ndarray, c0: float = 20.0, c_phi: float = 300.0, c_size: float = 2000.0
) -> np.ndarray:
    """Nordheim coefficient C (micro-ohm cm) of a solute with phi* difference ``dphi`` (V) and size misfit."""
    return c0 + c_phi * np.square(dphi) + c_size * np.square(misfit)


def nordheim_matthiessen(
    rho_host: np.ndarray, solute_fractions: np.ndarray, coefficients: np.ndarray
) -> np.ndarray:
    """Matthiessen sum of the host's resistivity and each solute's Nordheim term ``C_i x_i (1 - x_i)``.

    Args:
        rho_host: (N,) host resistivity.
        solute_fractions: (N, S) atomic fractions of the solutes (0 for the host and absent elements).
        coefficients: (N, S) Nordheim coefficients.
    """
    x = np.asarray(solute_fractions, dtype=np.float64)
    return np.asarray(rho_host, dtype=np.float64) + (coefficients * x * (1.0 - x)).sum(axis=-1)


def saturated_resistivity(rho_ideal: np.ndarray, rho_sat: float = 150.0) -> np.ndarray:
    """Parallel-resistor saturation: ``1 / (1/rho_ideal + 1/rho_sat)`` (Wiesmann et al. 1977)."""
    rho = np.asarray(rho_ideal, dtype=np.float64)
    return 1.0 / (1.0 / rho + 1.0 / rho_sat)


def atomic_volume(atomic_weight: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Volume per atom (m3) from the atomic weight (g/mol) and density (g/cm3)."""
    return np.asarray(atomic_weight) / np.asarray(density) / AVOGADRO * 1e-6


def shear_modulus(melting_point: np.ndarray, omega: np.ndarray, alpha: float = 35.0) -> np.ndarray:
    """Shear modulus (MPa) ``alpha k T_m / Omega`` (Frost and Ashby 1982); Cu: about 56 GPa (measured 48)."""
    return alpha * BOLTZMANN * np.asarray(melting_point) / np.asarray(omega) * 1e-6


def labusch_misfit(modulus_misfit: np.ndarray, size_misfit: np.ndarray) -> np.ndarray:
    """Labusch's combined misfit ``sqrt(eta'^2 + (16 delta)^2)``, ``eta' = eta / (1 + |eta| / 2)``."""
    eta = np.asarray(modulus_misfit, dtype=np.float64)
    eta_prime = eta / (1.0 + 0.5 * np.abs(eta))
    return np.sqrt(eta_prime**2 + (16.0 * np.asarray(size_misfit)) ** 2)


def solid_solution_strengthening(
    shear: np.ndarray, misfits: np.ndarray, fractions: np.ndarray, z: float = 550.0
) -> np.ndarray:
    """Labusch-Gypen-Deruyttere strengthening (MPa): ``M (G / Z) (sum_i eps_i^2 c_i)^(2/3)``.

    Equal to ``M (sum_i k_i^(3/2) c_i)^(2/3)`` with Labusch's ``k_i = G eps_i^(4/3) / Z``.

    Args:
        shear: (N,) shear modulus of the matrix (MPa).
        misfits: (N, S) Labusch misfits of the solutes.
        fractions: (N, S) dissolved atomic fractions.
    """
    total = (np.square(misfits) * np.asarray(fractions)).sum(axis=-1)
    return TAYLOR_FACTOR * np.asarray(shear) / z * np.power(total, 2.0 / 3.0)


def solubility_limit(
    size_misfit: np.ndarray, electronegativity_difference: np.ndarray, maximum: float = 0.25
) -> np.ndarray:
    """Hume-Rothery solubility (atomic fraction): ``maximum exp(-(delta/0.08)^2) exp(-(dchi/0.4)^2)``.

    At the 15 % size rule the solubility has fallen to 3 % of ``maximum``.
    """
    size = np.square(np.asarray(size_misfit) / 0.08)
    chemistry = np.square(np.asarray(electronegativity_difference) / 0.4)
    return maximum * np.exp(-size - chemistry)


def orowan_strengthening(
    shear: np.ndarray,
    burgers: np.ndarray,
    volume_fraction: np.ndarray,
    radius: float = 50e-9,
    poisson: float = 0.3,
) -> np.ndarray:
    """Ashby-Orowan precipitation strengthening (MPa); 0 where there is no precipitate.

    Args:
        shear: (N,) shear modulus (MPa).
        burgers: (N,) Burgers vector (m).
        volume_fraction: (N,) precipitate volume fraction in [0, 0.5].
        radius: mean precipitate radius (m).
    """
    f = np.clip(np.asarray(volume_fraction, dtype=np.float64), 0.0, 0.5)
    safe = np.where(f > 0, f, 1.0)
    spacing = 2.0 * radius * (np.sqrt(np.pi / (4.0 * safe)) - 1.0)
    b = np.asarray(burgers, dtype=np.float64)
    stress = (
        TAYLOR_FACTOR * 0.4 * shear * b * np.log(2.0 * radius / b) / (np.pi * np.sqrt(1 - poisson) * spacing)
    )
    return np.where(f > 0, stress, 0.0)


def tabor_vickers(yield_stress: np.ndarray) -> np.ndarray:
    """Vickers hardness (HV, kgf/mm2) from the yield stress (MPa): ``3 sigma_y / 9.807`` (Tabor 1951)."""
    return 3.0 * np.asarray(yield_stress) / STANDARD_GRAVITY


def size_mismatch(fractions: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Atomic size mismatch delta (%) of each composition (rows of ``fractions``, radii per column)."""
    c = np.asarray(fractions, dtype=np.float64)
    c = c / c.sum(axis=-1, keepdims=True)
    mean = c @ radii
    return 100.0 * np.sqrt((c * np.square(1.0 - radii[None, :] / mean[:, None])).sum(axis=-1))


def miedema_pair_enthalpy(  # noqa: PLR0917 (one value per Miedema element parameter)
    phi: np.ndarray,
    nws13: np.ndarray,
    molar_volume: np.ndarray,
    transition: np.ndarray,
    hybridisation: np.ndarray,
) -> np.ndarray:
    """(E, E) equiatomic liquid mixing enthalpies dH_AB (kJ/mol) of Miedema's model (de Boer et al. 1988).

    ``dH_AinB = V_A^(2/3) / mean(n_A^(-1/3), n_B^(-1/3)) (-P dphi^2 + Q dn^(1/3)^2 - R)`` and
    ``dH_AB = c_A c_B^s dH_AinB`` at ``c_A = 1/2`` with surface fraction ``c_B^s``. P = 14.1 (two transition
    metals), 10.6 (none) or 12.35 (one); Q = 9.4 P; R = 0.73 r_A r_B P between a transition metal (r = 1)
    and a p-metal (``hybridisation`` r > 0), else 0.

    Args:
        phi, nws13, molar_volume: Miedema's phi* (V), n_ws^(1/3) and molar volume (cm3/mol) per element.
        transition: 1 for a transition metal.
        hybridisation: Miedema's r of the p-metals (0 for the others).
    """
    tm = np.asarray(transition, dtype=bool)
    both = tm[:, None] & tm[None, :]
    none = ~tm[:, None] & ~tm[None, :]
    p = np.where(both, 14.1, np.where(none, 10.6, 12.35))
    r_value = np.where(tm, 1.0, hybridisation)
    mixed = tm[:, None] ^ tm[None, :]
    r_over_p = np.where(mixed, 0.73 * r_value[:, None] * r_value[None, :], 0.0)
    dphi = phi[:, None] - phi[None, :]
    dn = nws13[:, None] - nws13[None, :]
    v23 = np.power(molar_volume, 2.0 / 3.0)
    mean_inv_n = 0.5 * (1.0 / nws13[:, None] + 1.0 / nws13[None, :])
    interface = v23[:, None] / mean_inv_n * p * (-(dphi**2) + 9.4 * dn**2 - r_over_p)
    surface_b = v23[None, :] / (v23[:, None] + v23[None, :])
    pair = 0.5 * surface_b * interface
    np.fill_diagonal(pair, 0.0)
    return pair


def mixing_enthalpy(fractions: np.ndarray, pair_enthalpy: np.ndarray) -> np.ndarray:
    """``sum_{i<j} 4 dH_ij c_i c_j`` (kJ/mol) of each composition (Takeuchi and Inoue 2005)."""
    c = np.asarray(fractions, dtype=np.float64)
    c = c / c.sum(axis=-1, keepdims=True)
    return 2.0 * np.einsum("ni,ij,nj->n", c, pair_enthalpy, c)  # 4 * (1/2) over ordered pairs


def glass_forming_logit(  # noqa: PLR0917 (one value per criterion and its scale)
    delta: np.ndarray,
    enthalpy: np.ndarray,
    components: np.ndarray,
    delta_limit: float = 9.0,
    enthalpy_limit: float = -22.0,
    delta_scale: float = 1.5,
    enthalpy_scale: float = 6.0,
    component_weight: float = 0.75,
) -> np.ndarray:
    """Log-odds of forming a glass from Inoue's three rules, measured beyond Guo et al.'s amorphous limits.

    ``(delta - 9) / 1.5 + (-22 - dH_mix) / 6 + 0.75 (min(n, 5) - 3)``: 0 at both limits with three
    components; each extra component (up to five) and each step of misfit or negative enthalpy adds.
    """
    n = np.minimum(np.asarray(components, dtype=np.float64), 5.0)
    return (
        (np.asarray(delta) - delta_limit) / delta_scale
        + (enthalpy_limit - np.asarray(enthalpy)) / enthalpy_scale
        + component_weight * (n - 3.0)
    )
