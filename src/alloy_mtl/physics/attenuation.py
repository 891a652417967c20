"""X-ray attenuation of alloy compositions from xraydb (Elam, Ravel & Sieber tables).

Mass attenuation coefficients are total (photo-electric + coherent + incoherent) ``xraydb.mu_elam`` values in
cm2/g. A mixture follows the weight-fraction mixing rule mu/rho = sum_i w_i (mu/rho)_i; the linear coefficient
is mu = rho * mu/rho (1/cm). Energies are given in keV throughout this package (xraydb takes eV).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import xraydb
from numpy.typing import ArrayLike

__all__ = [
    "composition_matrix",
    "element_mass_attenuation",
    "linear_attenuation",
    "mass_attenuation",
    "mass_attenuation_table",
]


@lru_cache(maxsize=256)
def _element_mu_cached(element: str, energies_kev: bytes) -> np.ndarray:
    energies = np.frombuffer(energies_kev, dtype=np.float64)
    try:
        mu = np.asarray(xraydb.mu_elam(element, energies * 1000.0), dtype=np.float64)
    except Exception as exc:
        raise ValueError(f"xraydb has no attenuation data for element {element!r}: {exc}") from exc
    mu = np.atleast_1d(mu).reshape(energies.shape)
    mu.setflags(write=False)
    return mu


def _as_energies(energies_kev: ArrayLike) -> np.ndarray:
    energies = np.ascontiguousarray(np.atleast_1d(np.asarray(energies_kev, dtype=np.float64)))
    if energies.ndim != 1 or not np.all(np.isfinite(energies)) or np.any(energies <= 0):
        raise ValueError(
            f"energies_kev must be a 1-D array of positive finite keV values, got {energies_kev!r}"
        )
    return energies


def element_mass_attenuation(element: str, energies_kev: ArrayLike) -> np.ndarray:
    """Total mass attenuation coefficient (cm2/g) of one element at ``energies_kev`` (cached per element/grid)."""
    energies = _as_energies(energies_kev)
    return _element_mu_cached(element, energies.tobytes())


def mass_attenuation_table(elements: Sequence[str], energies_kev: ArrayLike) -> np.ndarray:
    """Mass attenuation coefficients of ``elements`` as an array (n_elements, n_energies) in cm2/g."""
    energies = _as_energies(energies_kev)
    return np.stack([element_mass_attenuation(el, energies) for el in elements])


def _check_composition(composition: Mapping[str, float]) -> None:
    if not composition:
        raise ValueError("composition is empty; expected element -> weight fraction")
    fractions = np.array(list(composition.values()), dtype=np.float64)
    if np.any(fractions < 0) or abs(fractions.sum() - 1.0) > 1e-6:
        raise ValueError(f"composition weight fractions must be >= 0 and sum to 1, got {dict(composition)}")


def mass_attenuation(composition: Mapping[str, float], energies_kev: ArrayLike) -> np.ndarray:
    """Mass attenuation coefficient (cm2/g) of a composition (element -> weight fraction) at each energy."""
    _check_composition(composition)
    elements = list(composition)
    weights = np.array([composition[el] for el in elements], dtype=np.float64)
    return weights @ mass_attenuation_table(elements, energies_kev)


def linear_attenuation(
    composition: Mapping[str, float], density_g_cm3: float, energies_kev: ArrayLike
) -> np.ndarray:
    """Linear attenuation coefficient (1/cm) of a composition with density ``density_g_cm3``."""
    if not density_g_cm3 > 0:
        raise ValueError(f"density_g_cm3 must be > 0, got {density_g_cm3!r}")
    return density_g_cm3 * mass_attenuation(composition, energies_kev)


def composition_matrix(compositions: Sequence[Mapping[str, float]]) -> tuple[list[str], np.ndarray]:
    """Stack compositions into (elements, weights) with weights of shape (n_compositions, n_elements).

    ``weights @ mass_attenuation_table(elements, e)`` gives every composition's mass attenuation at once.
    """
    elements = sorted({el for comp in compositions for el in comp})
    weights = np.array([[comp.get(el, 0.0) for el in elements] for comp in compositions], dtype=np.float64)
    return elements, weights
