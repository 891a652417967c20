"""Materials the models were never trained on, for unknown-material (out-of-distribution) evaluation.

Two families, each imaged as the five alloys are (the same wedges, instrument and noise):

- ``near``: other wrought aluminium designations (Aluminium Association / EN 573-3 registration limits in
  weight percent, handbook densities), whose attenuation differs from one of the five by as little as the five
  differ among themselves;
- ``far``: other engineering materials (a magnesium alloy, a titanium alloy, a stainless steel, PMMA).

Gaseous interstitials (O, N, H in titanium; N in steel) are left out of the ranged elements: their weight
fractions are below 0.3 % and the ideal-mixture density (``alloys.specimen_density``) of a gas is meaningless.
A user's own material is an :class:`~alloy_mtl.physics.alloys.AlloySpec` built by :func:`material_from_params`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from alloy_mtl.constants import ALLOYS
from alloy_mtl.physics.alloys import ALLOY_SPECS, AlloySpec

__all__ = [
    "FAR_MATERIALS",
    "MATERIAL_FAMILIES",
    "NEAR_MATERIALS",
    "OPEN_BEAM",
    "OTHER_MATERIALS",
    "material_from_params",
    "material_spec",
]


def _spec(name: str, density: float, base: str = "Al", **limits: tuple[float, float]) -> AlloySpec:
    return AlloySpec(name, MappingProxyType(dict(limits)), 0.0, density, base)


NEAR_MATERIALS: Mapping[str, AlloySpec] = MappingProxyType(
    {
        "2024": _spec(
            "2024",
            2.78,
            Si=(0.0, 0.50),
            Fe=(0.0, 0.50),
            Cu=(3.8, 4.9),
            Mn=(0.3, 0.9),
            Mg=(1.2, 1.8),
            Cr=(0.0, 0.10),
            Zn=(0.0, 0.25),
            Ti=(0.0, 0.15),
        ),
        "3003": _spec(
            "3003", 2.73, Si=(0.0, 0.6), Fe=(0.0, 0.7), Cu=(0.05, 0.20), Mn=(1.0, 1.5), Zn=(0.0, 0.10)
        ),
        "5754": _spec(
            "5754",
            2.67,
            Si=(0.0, 0.40),
            Fe=(0.0, 0.40),
            Cu=(0.0, 0.10),
            Mn=(0.0, 0.50),
            Mg=(2.6, 3.6),
            Cr=(0.0, 0.30),
            Zn=(0.0, 0.20),
            Ti=(0.0, 0.15),
        ),
        "6061": _spec(
            "6061",
            2.70,
            Si=(0.4, 0.8),
            Fe=(0.0, 0.7),
            Cu=(0.15, 0.40),
            Mn=(0.0, 0.15),
            Mg=(0.8, 1.2),
            Cr=(0.04, 0.35),
            Zn=(0.0, 0.25),
            Ti=(0.0, 0.15),
        ),
        "7020": _spec(
            "7020",
            2.78,
            Si=(0.0, 0.35),
            Fe=(0.0, 0.40),
            Cu=(0.0, 0.20),
            Mn=(0.05, 0.50),
            Mg=(1.0, 1.4),
            Cr=(0.10, 0.35),
            Zn=(4.0, 5.0),
            Zr=(0.08, 0.20),
        ),
    }
)
"""Other aluminium designations (near-OOD)."""

FAR_MATERIALS: Mapping[str, AlloySpec] = MappingProxyType(
    {
        "AZ31B": _spec(
            "AZ31B", 1.77, "Mg", Al=(2.5, 3.5), Zn=(0.6, 1.4), Mn=(0.2, 1.0), Si=(0.0, 0.10), Cu=(0.0, 0.05)
        ),
        "Ti-6Al-4V": _spec(
            "Ti-6Al-4V", 4.43, "Ti", Al=(5.5, 6.75), V=(3.5, 4.5), Fe=(0.0, 0.30), C=(0.0, 0.08)
        ),
        "AISI-304": _spec(
            "AISI-304",
            7.93,
            "Fe",
            Cr=(18.0, 20.0),
            Ni=(8.0, 10.5),
            Mn=(0.0, 2.0),
            Si=(0.0, 0.75),
            C=(0.0, 0.08),
            P=(0.0, 0.045),
            S=(0.0, 0.03),
        ),
        # poly(methyl methacrylate), C5H8O2: a fixed composition (carbon the balance)
        "PMMA": _spec("PMMA", 1.18, "C", O=(31.96, 31.96), H=(8.05, 8.05)),
    }
)
"""Other engineering materials (far-OOD)."""

OPEN_BEAM = AlloySpec("open_beam", MappingProxyType({}), 0.0, 1e-9)
"""Nothing in the beam: a vanishingly thin, vanishingly light specimen (flat fields, open-beam images)."""

OTHER_MATERIALS: Mapping[str, AlloySpec] = MappingProxyType({**NEAR_MATERIALS, **FAR_MATERIALS})
"""Every built-in material that is not one of the five alloys."""

MATERIAL_FAMILIES: Mapping[str, str] = MappingProxyType(
    {**dict.fromkeys(NEAR_MATERIALS, "near"), **dict.fromkeys(FAR_MATERIALS, "far")}
)
"""Material name -> ``near`` (another aluminium designation) or ``far``."""


def material_spec(name: str) -> AlloySpec:
    """The specification of one of the five alloys or a built-in other material; ValueError naming all."""
    key = str(name)
    spec = ALLOY_SPECS.get(key) or OTHER_MATERIALS.get(key)
    if spec is None:
        raise ValueError(
            f"unknown material {key!r}; expected one of the alloys {', '.join(ALLOYS)} or another material "
            f"{', '.join(OTHER_MATERIALS)} (or define it: name, density_g_cm3, base, limits_wt_pct)"
        )
    return spec


def material_from_params(name: str, params: Mapping[str, Any]) -> AlloySpec:
    """A user's material from parameters ``{density_g_cm3, base (default Al), limits_wt_pct: {el: [min, max]}}``.

    Every problem is collected into one ValueError that names the material and the field.
    """
    problems: list[str] = []
    unknown = sorted(set(params) - {"density_g_cm3", "base", "limits_wt_pct"})
    if unknown:
        problems.append(f"unknown key(s) {unknown}; expected density_g_cm3, base, limits_wt_pct")
    density = params.get("density_g_cm3")
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not density > 0:
        problems.append(f"density_g_cm3: expected a number > 0 (g/cm3), got {density!r}")
    base = params.get("base", "Al")
    if not isinstance(base, str) or not base:
        problems.append(f"base: expected an element symbol, got {base!r}")
    limits: dict[str, tuple[float, float]] = {}
    raw = params.get("limits_wt_pct") or {}
    if not isinstance(raw, Mapping):
        problems.append(f"limits_wt_pct: expected element -> [min, max] in wt%, got {raw!r}")
        raw = {}
    for element, bounds in raw.items():
        try:
            low, high = (float(v) for v in bounds)
        except (TypeError, ValueError):
            problems.append(f"limits_wt_pct.{element}: expected [min, max] in wt%, got {bounds!r}")
            continue
        if not 0.0 <= low <= high <= 100.0:
            problems.append(f"limits_wt_pct.{element}: expected 0 <= min <= max <= 100, got [{low}, {high}]")
        limits[str(element)] = (low, high)
    if sum(high for _, high in limits.values()) > 100.0 and not problems:
        problems.append("limits_wt_pct: the maxima add up to more than 100 wt%")
    if problems:
        raise ValueError(f"material {name!r}: " + "; ".join(problems))
    return AlloySpec(str(name), MappingProxyType(limits), 0.0, float(density), str(base))
