"""The five wrought aluminium alloys: designation composition limits, handbook densities, sampling.

Composition limits are the Aluminium Association / EN 573-3 registration limits in weight percent. An element
given only as a maximum (an impurity, e.g. Fe <= 0.40) has lower limit 0. Aluminium is the balance. The
"others" rows of the registrations (each <= 0.05, total <= 0.15) are not modelled. Densities are handbook
values (ASM / EN 573 data sheets) in g/cm3 for the nominal alloy.

A specimen's composition is sampled inside its alloy's limits (``sample_composition``) and its density is the
handbook density scaled by how the sampled composition changes the ideal-mixture density relative to the
nominal composition (``specimen_density``), so that a class has a real, physically plausible spread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

import numpy as np
import xraydb
from scipy.special import ndtr, ndtri

from alloy_mtl.constants import ALLOYS

__all__ = [
    "ALLOY_SPECS",
    "AlloySpec",
    "get_alloy",
    "nominal_composition",
    "sample_composition",
    "specimen_density",
]


@dataclass(frozen=True)
class AlloySpec:
    """Composition limits and density of one alloy designation.

    Attributes:
        name: designation, one of ``ALLOYS`` (or another material's name, see ``physics.materials``).
        limits_wt_pct: alloying/impurity element -> (min, max) in weight percent (the base excluded: balance).
        al_min_wt_pct: minimum content of the base element in weight percent (only 1050 registers one).
        density_g_cm3: handbook density of the nominal alloy.
        base: the balance element (aluminium for the alloys this project classifies).
    """

    name: str
    limits_wt_pct: Mapping[str, tuple[float, float]]
    al_min_wt_pct: float
    density_g_cm3: float
    base: str = "Al"

    def nominal(self) -> dict[str, float]:
        """Nominal composition as weight fractions (mid-range for ranged elements, 1/4 of the maximum for
        impurities, the base element = balance); the values sum to 1."""
        frac = {}
        for element, (low, high) in self.limits_wt_pct.items():
            frac[element] = (0.5 * (low + high) if low > 0 else 0.25 * high) / 100.0
        frac[self.base] = 1.0 - sum(frac.values())
        return frac


def _spec(name: str, density: float, al_min: float, **limits: tuple[float, float]) -> AlloySpec:
    return AlloySpec(name, MappingProxyType(dict(limits)), al_min, density)


ALLOY_SPECS: Mapping[str, AlloySpec] = MappingProxyType(
    {
        "1050": _spec(
            "1050",
            2.705,
            99.5,
            Si=(0.0, 0.25),
            Fe=(0.0, 0.40),
            Cu=(0.0, 0.05),
            Mn=(0.0, 0.05),
            Mg=(0.0, 0.05),
            Zn=(0.0, 0.07),
            Ti=(0.0, 0.05),
        ),
        "2017": _spec(
            "2017",
            2.79,
            0.0,
            Si=(0.2, 0.8),
            Fe=(0.0, 0.7),
            Cu=(3.5, 4.5),
            Mn=(0.4, 1.0),
            Mg=(0.4, 0.8),
            Cr=(0.0, 0.10),
            Zn=(0.0, 0.25),
            Ti=(0.0, 0.15),
        ),
        "5083": _spec(
            "5083",
            2.66,
            0.0,
            Si=(0.0, 0.40),
            Fe=(0.0, 0.40),
            Cu=(0.0, 0.10),
            Mn=(0.4, 1.0),
            Mg=(4.0, 4.9),
            Cr=(0.05, 0.25),
            Zn=(0.0, 0.25),
            Ti=(0.0, 0.15),
        ),
        "6082": _spec(
            "6082",
            2.70,
            0.0,
            Si=(0.7, 1.3),
            Fe=(0.0, 0.50),
            Cu=(0.0, 0.10),
            Mn=(0.4, 1.0),
            Mg=(0.6, 1.2),
            Cr=(0.0, 0.25),
            Zn=(0.0, 0.20),
            Ti=(0.0, 0.10),
        ),
        "7075": _spec(
            "7075",
            2.81,
            0.0,
            Si=(0.0, 0.40),
            Fe=(0.0, 0.50),
            Cu=(1.2, 2.0),
            Mn=(0.0, 0.30),
            Mg=(2.1, 2.9),
            Cr=(0.18, 0.28),
            Zn=(5.1, 6.1),
            Ti=(0.0, 0.20),
        ),
    }
)
"""Alloy designation -> specification, in ``ALLOYS`` order."""


def get_alloy(alloy: str) -> AlloySpec:
    """Return the specification of ``alloy``; raise ValueError naming it and the allowed ones if unknown."""
    try:
        return ALLOY_SPECS[str(alloy)]
    except KeyError:
        raise ValueError(f"unknown alloy {alloy!r}; expected one of {', '.join(ALLOYS)}") from None


def _as_spec(alloy: str | AlloySpec) -> AlloySpec:
    return alloy if isinstance(alloy, AlloySpec) else get_alloy(alloy)


def nominal_composition(alloy: str) -> dict[str, float]:
    """Nominal composition of ``alloy`` as element -> weight fraction (sums to 1)."""
    return get_alloy(alloy).nominal()


def sample_composition(
    alloy: str | AlloySpec, rng: np.random.Generator, spread: float = 1.0
) -> dict[str, float]:
    """Sample one specimen's composition inside the designation limits of ``alloy``.

    Commercial material is produced to a target inside the registered limits, so each element follows a normal
    law centred on the nominal content (mid-range for ranged elements, 1/4 of the maximum for impurities) with
    standard deviation ``spread * (max - min) / 6``, truncated to [min, max] (sampled exactly by inverse CDF,
    no clipping). Where the alloy registers a minimum aluminium content (1050: 99.5 %), the solutes are scaled
    down if needed so the balance respects it. Al is the balance.

    Args:
        alloy: designation, one of ``ALLOYS``, or a specification (another material).
        rng: numpy random generator (the only source of randomness).
        spread: scale of the spread; 0 returns the nominal composition.

    Returns:
        element -> weight fraction; all values >= 0, summing to 1.
    """
    if not spread >= 0:
        raise ValueError(f"spread must be >= 0, got {spread!r}")
    spec = _as_spec(alloy)
    nominal = spec.nominal()
    elements = list(spec.limits_wt_pct)
    low = np.array([spec.limits_wt_pct[el][0] for el in elements]) / 100.0
    high = np.array([spec.limits_wt_pct[el][1] for el in elements]) / 100.0
    centre = np.array([nominal[el] for el in elements])
    uniform = rng.random(len(elements))
    if spread > 0:
        # an element registered at one exact content (high == low) keeps it
        sigma = np.where(high > low, spread * (high - low) / 6.0, 1.0)
        cdf_low, cdf_high = ndtr((low - centre) / sigma), ndtr((high - centre) / sigma)
        values = centre + sigma * ndtri(cdf_low + uniform * (cdf_high - cdf_low))
        values = np.where(high > low, np.clip(values, low, high), centre)
    else:
        values = centre
    max_solute = 1.0 - spec.al_min_wt_pct / 100.0
    if values.sum() > max_solute:
        values = values * (max_solute / values.sum())
    frac = {el: float(v) for el, v in zip(elements, values, strict=True)}
    frac[spec.base] = 1.0 - float(values.sum())
    return frac


@cache
def _element_density(element: str) -> float:
    return float(xraydb.atomic_density(element))


def _mixture_density(composition: Mapping[str, float]) -> float:
    """Ideal-mixture density (additive specific volumes) of a weight-fraction composition."""
    return 1.0 / sum(w / _element_density(el) for el, w in composition.items())


def specimen_density(alloy: str | AlloySpec, composition: Mapping[str, float]) -> float:
    """Density (g/cm3) of a specimen: handbook density x ideal-mixture density ratio sampled / nominal."""
    spec = _as_spec(alloy)
    ratio = _mixture_density(composition) / _mixture_density(spec.nominal())
    return spec.density_g_cm3 * ratio
