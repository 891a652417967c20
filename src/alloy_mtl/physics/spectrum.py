"""Polychromatic tungsten-tube spectrum and energy-integrating detector response.

What is modelled (and what is not):

* Bremsstrahlung: Kramers' law for the photon-number spectrum of a thick tungsten target,
  dN/dE = k Z (E0 - E) / E for E < E0 (E0 = e * tube voltage), zero above. Each energy bin holds the exact
  integral of that law over the bin, so the spectrum is exactly zero above kV and positive below.
* Characteristic W K lines (Ka1, Ka2, Kb1, Kb2, Kb3 ... with xraydb's relative intensities) only when the tube
  voltage exceeds the W K edge (69.5 keV). Their total photon yield relative to the bremsstrahlung is
  ``K_LINE_SCALE * (E0 / E_K - 1) ** 1.63`` (Green & Cosslett's over-voltage law); the scale is chosen so the K
  lines carry roughly 5-10 % of the filtered photons at 80 kV, as in tabulated W spectra (TASMIP). W L lines
  (8-12 keV) are not modelled: the window and filter remove them.
* Filtration: inherent beryllium exit window plus an added aluminium filter, both attenuated with
  ``xraydb.mu_elam`` (Be 1.848 g/cm3, Al 2.699 g/cm3). Anode self-absorption (and hence the spectral part of
  the heel effect), air and off-focal radiation are not modelled.
* Detector: an energy-integrating CsI scintillator (4.51 g/cm3, default 0.2 mm). A photon of energy E is
  absorbed with probability eta(E) = 1 - exp(-mu_CsI(E) * t) (total attenuation from xraydb) and contributes a
  signal proportional to E. The mean signal of N incident photons is N * sum p(E) eta(E) E and, for Poisson
  photon statistics, its variance is N * sum p(E) eta(E) E^2 (Swank/optical noise ignored).

Energies are bin centres in keV; spectra are photon fractions per bin (summing to 1 after normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xraydb
from numpy.typing import ArrayLike

from alloy_mtl.physics.attenuation import element_mass_attenuation, mass_attenuation

__all__ = [
    "K_LINE_SCALE",
    "DetectorResponse",
    "TubeSpectrum",
    "detector_response",
    "energy_grid",
    "kramers_spectrum",
    "tube_spectrum",
]

W_Z = 74
K_LINE_SCALE = 0.35
"""Scale of the W K-line yield relative to bremsstrahlung (see module docstring)."""
_BE_DENSITY = 1.848
_AL_DENSITY = 2.699
_CSI_DENSITY = 4.51


def energy_grid(max_kv: float, bin_kev: float = 0.5, min_kev: float = 1.0) -> np.ndarray:
    """Bin centres (keV) of a uniform grid covering [min_kev, max_kv] with bins of width ``bin_kev``."""
    if not (max_kv > min_kev and bin_kev > 0):
        raise ValueError(
            f"energy grid needs max_kv > min_kev and bin_kev > 0, got {max_kv}, {min_kev}, {bin_kev}"
        )
    n_bins = int(np.ceil((max_kv - min_kev) / bin_kev))
    return min_kev + bin_kev * (np.arange(n_bins) + 0.5)


def _bin_edges(energies_kev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = 0.5 * np.gradient(energies_kev) if energies_kev.size > 1 else np.array([0.5])
    return energies_kev - half, energies_kev + half


def kramers_spectrum(kv: float, energies_kev: ArrayLike) -> np.ndarray:
    """Unfiltered Kramers photon spectrum (arbitrary units, Z = 74) integrated over each energy bin.

    Bin [a, b] receives Z * integral_a^min(b,E0) (E0 - E)/E dE = Z * (E0 ln(b'/a) - (b' - a)) with b' = min(b, E0);
    bins starting at or above E0 get exactly 0.
    """
    if not kv > 0:
        raise ValueError(f"tube voltage kv must be > 0, got {kv!r}")
    energies = np.asarray(energies_kev, dtype=np.float64)
    low, high = _bin_edges(energies)
    low = np.maximum(low, 1e-6)
    top = np.minimum(high, kv)
    valid = top > low
    out = np.zeros_like(energies)
    out[valid] = W_Z * (kv * np.log(top[valid] / low[valid]) - (top[valid] - low[valid]))
    return out


def _k_lines(kv: float, energies_kev: np.ndarray, bremsstrahlung_total: float) -> np.ndarray:
    k_edge = xraydb.xray_edge("W", "K").energy / 1000.0
    lines = np.zeros_like(energies_kev)
    if kv <= k_edge:
        return lines
    total = K_LINE_SCALE * (kv / k_edge - 1.0) ** 1.63 * bremsstrahlung_total
    k_lines = {name: line for name, line in xraydb.xray_lines("W").items() if line.initial_level == "K"}
    weight_sum = sum(line.intensity for line in k_lines.values())
    low, high = _bin_edges(energies_kev)
    for line in k_lines.values():
        energy = line.energy / 1000.0
        idx = np.nonzero((low <= energy) & (energy < high))[0]
        if idx.size:
            lines[idx[0]] += total * line.intensity / weight_sum
    return lines


def _filter_transmission(energies_kev: np.ndarray, be_window_mm: float, al_filter_mm: float) -> np.ndarray:
    mu_be = element_mass_attenuation("Be", energies_kev) * _BE_DENSITY
    mu_al = element_mass_attenuation("Al", energies_kev) * _AL_DENSITY
    return np.exp(-(mu_be * be_window_mm + mu_al * al_filter_mm) / 10.0)


@dataclass(frozen=True)
class TubeSpectrum:
    """Filtered photon spectrum of a W tube at one voltage.

    Attributes:
        kv: tube voltage (kV).
        energies_kev: energy bin centres (keV).
        photons: fraction of incident photons per bin (sums to 1).
    """

    kv: float
    energies_kev: np.ndarray
    photons: np.ndarray


@lru_cache(maxsize=64)
def _tube_spectrum_cached(
    kv: float, energies: bytes, be_window_mm: float, al_filter_mm: float, characteristic: bool
) -> np.ndarray:
    grid = np.frombuffer(energies, dtype=np.float64)
    brems = kramers_spectrum(kv, grid)
    spectrum = brems + (_k_lines(kv, grid, float(brems.sum())) if characteristic else 0.0)
    spectrum = spectrum * _filter_transmission(grid, be_window_mm, al_filter_mm)
    total = spectrum.sum()
    if not total > 0:
        raise ValueError(f"tube spectrum at {kv} kV is fully absorbed by the filtration")
    out = spectrum / total
    out.setflags(write=False)
    return out


def tube_spectrum(
    kv: float,
    energies_kev: ArrayLike,
    be_window_mm: float = 1.0,
    al_filter_mm: float = 1.0,
    characteristic: bool = True,
) -> TubeSpectrum:
    """Filtered, normalised photon spectrum of a tungsten tube at ``kv`` on the grid ``energies_kev``.

    Args:
        kv: tube voltage in kV (the maximum photon energy in keV).
        energies_kev: energy bin centres (keV), uniform grid (see ``energy_grid``).
        be_window_mm: inherent beryllium exit window thickness (mm).
        al_filter_mm: added aluminium filter thickness (mm).
        characteristic: add the W K lines when kv exceeds the K edge.
    """
    if be_window_mm < 0 or al_filter_mm < 0:
        raise ValueError(f"filter thicknesses must be >= 0, got Be {be_window_mm} mm, Al {al_filter_mm} mm")
    grid = np.ascontiguousarray(energies_kev, dtype=np.float64)
    photons = _tube_spectrum_cached(
        float(kv), grid.tobytes(), float(be_window_mm), float(al_filter_mm), characteristic
    )
    return TubeSpectrum(float(kv), grid, photons)


@dataclass(frozen=True)
class DetectorResponse:
    """Energy-integrating detector weights per energy bin.

    Attributes:
        mean_weight: eta(E) * E, the mean signal per incident photon of energy E (keV).
        var_weight: eta(E) * E^2, the signal variance per incident photon of energy E (keV^2).
    """

    mean_weight: np.ndarray
    var_weight: np.ndarray


def detector_response(energies_kev: ArrayLike, scintillator_mm: float = 0.2) -> DetectorResponse:
    """Weights of a CsI energy-integrating detector of thickness ``scintillator_mm`` (see module docstring)."""
    if not scintillator_mm > 0:
        raise ValueError(f"scintillator_mm must be > 0, got {scintillator_mm!r}")
    energies = np.asarray(energies_kev, dtype=np.float64)
    mass_cs, mass_i = xraydb.atomic_mass("Cs"), xraydb.atomic_mass("I")
    csi = {"Cs": mass_cs / (mass_cs + mass_i), "I": mass_i / (mass_cs + mass_i)}
    mu_csi = mass_attenuation(csi, energies) * _CSI_DENSITY
    eta = 1.0 - np.exp(-mu_csi * scintillator_mm / 10.0)
    return DetectorResponse(eta * energies, eta * energies**2)
