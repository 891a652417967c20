"""Generated alloy-property data with the study's structure, labelled by the physical laws of :mod:`.laws`.

Three label sets as in Kang 2025: resistivity (many labels), Vickers hardness and amorphous-forming ability
(few), drawn from different alloy families and barely overlapping (``overlap`` rows of the resistivity family
also carry a hardness label). Every value gets measurement noise; the amorphous label is a noisy threshold
of the glass-forming log-odds. The table has one column per element (atomic percent) and the three targets
(NaN where a row has no label).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alloy_mtl.properties import laws
from alloy_mtl.properties.elements import ELEMENTS, HOSTS, element_table

logger = logging.getLogger(__name__)

RESISTIVITY = "resistivity"
HARDNESS = "hardness"
AMORPHOUS = "amorphous"
TARGETS: tuple[str, ...] = (RESISTIVITY, HARDNESS, AMORPHOUS)
TARGET_UNITS = {RESISTIVITY: "micro-ohm cm", HARDNESS: "HV", AMORPHOUS: "1 = amorphous, 0 = crystalline"}
ID_COLUMN = "alloy_id"

#: Glass-forming families: a late transition metal, an early/large metal and optionally Al or a metalloid.
_GLASS_LATE = ("Cu", "Ni", "Co", "Fe", "Pd", "Pt", "Ag", "Au")
_GLASS_EARLY = ("Zr", "Ti", "Hf", "Nb", "La", "Y", "Mg", "Ta")
_GLASS_MINOR = ("Al", "B", "Si")


@dataclass(frozen=True)
class NoiseLevels:
    """Measurement noise: relative (lognormal sigma) for the regressions, logit noise for the label."""

    resistivity: float = 0.03
    hardness: float = 0.05
    amorphous_logit: float = 1.0


class AlloyLaws:
    """Ground truth of the three properties for compositions given as atomic fractions over :data:`ELEMENTS`."""

    def __init__(self) -> None:
        table = element_table()
        self.table = table
        self.radius = table["radius"].to_numpy()
        self.phi = table["phi"].to_numpy()
        self.chi = table["electronegativity"].to_numpy()
        omega = laws.atomic_volume(table["atomic_weight"].to_numpy(), table["density"].to_numpy())
        self.shear = laws.shear_modulus(table["melting_point"].to_numpy(), omega)
        self.rho_pure = laws.wiedemann_franz_resistivity(table["thermal_conductivity"].to_numpy())
        hybrid = np.array([laws.MIEDEMA_R.get(s, 0.0) for s in ELEMENTS])
        self.pair_enthalpy = laws.miedema_pair_enthalpy(
            self.phi,
            table["nws13"].to_numpy(),
            table["molar_volume"].to_numpy(),
            table["transition_metal"].to_numpy(),
            hybrid,
        )

    def _host_view(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        host = x.argmax(axis=1)
        solutes = x.copy()
        solutes[np.arange(len(x)), host] = 0.0
        misfit = (self.radius[None, :] - self.radius[host][:, None]) / self.radius[host][:, None]
        return host, solutes, misfit

    def resistivity(self, x: np.ndarray) -> np.ndarray:
        """Wiedemann-Franz host + Nordheim solute terms (Matthiessen), saturated (Mooij); NaN for hosts without kappa."""
        host, solutes, misfit = self._host_view(x)
        dphi = self.phi[None, :] - self.phi[host][:, None]
        coefficients = laws.nordheim_coefficient(dphi, misfit)
        ideal = laws.nordheim_matthiessen(self.rho_pure[host], solutes, coefficients)
        return laws.saturated_resistivity(ideal)

    def hardness(self, x: np.ndarray) -> np.ndarray:
        """Tabor hardness of friction stress + Labusch solid solution + Orowan precipitates (solute beyond solubility)."""
        host, solutes, misfit = self._host_view(x)
        shear = x @ self.shear  # rule of mixtures
        modulus_misfit = (self.shear[None, :] - shear[:, None]) / shear[:, None]
        dchi = self.chi[None, :] - self.chi[host][:, None]
        limit = laws.solubility_limit(misfit, dchi)
        dissolved = np.minimum(solutes, limit)
        excess = solutes - dissolved
        eps = laws.labusch_misfit(modulus_misfit, misfit)
        sigma_ss = laws.solid_solution_strengthening(shear, eps, dissolved)
        burgers = 2.0 * self.radius[host] * 1e-12
        sigma_ppt = laws.orowan_strengthening(shear, burgers, np.minimum(excess.sum(axis=1), 0.3))
        friction = 1.5e-3 * shear
        return laws.tabor_vickers(friction + sigma_ss + sigma_ppt)

    def glass_logit(self, x: np.ndarray) -> np.ndarray:
        """Glass-forming log-odds from size mismatch, Miedema mixing enthalpy and the number of components."""
        delta = laws.size_mismatch(x, self.radius)
        enthalpy = laws.mixing_enthalpy(x, self.pair_enthalpy)
        components = (x >= 0.01).sum(axis=1)
        return laws.glass_forming_logit(delta, enthalpy, components)


def _index(symbols: tuple[str, ...]) -> np.ndarray:
    return np.array([ELEMENTS.index(s) for s in symbols])


def _host_alloys(
    rng: np.random.Generator, n: int, solute_counts: tuple[float, ...], max_solute: float
) -> np.ndarray:
    """Host-based alloys: a host of :data:`HOSTS`, 1..len(solute_counts) solutes, solute total up to max."""
    x = np.zeros((n, len(ELEMENTS)))
    hosts = _index(HOSTS)
    counts = rng.choice(np.arange(1, len(solute_counts) + 1), size=n, p=np.asarray(solute_counts))
    totals = max_solute * rng.beta(1.2, 2.5, size=n)
    for row in range(n):
        host = rng.choice(hosts)
        others = np.setdiff1d(np.arange(len(ELEMENTS)), [host])
        chosen = rng.choice(others, size=counts[row], replace=False)
        x[row, chosen] = totals[row] * rng.dirichlet(np.full(counts[row], 1.5))
        x[row, host] = 1.0 - totals[row]
    return x


def _glass_candidates(rng: np.random.Generator, n: int, crystalline_share: float = 0.6) -> np.ndarray:
    """Multi-component alloys (2-5 components, Dirichlet fractions): from glass-forming families, or, for a
    ``crystalline_share`` of the rows, from any elements."""
    x = np.zeros((n, len(ELEMENTS)))
    late, early, minor = _index(_GLASS_LATE), _index(_GLASS_EARLY), _index(_GLASS_MINOR)
    every = np.arange(len(ELEMENTS))
    for row in range(n):
        k = rng.integers(2, 6)
        if rng.random() < crystalline_share:  # a random multi-principal alloy (mostly crystalline)
            picked = rng.choice(every, size=k, replace=False)
            x[row, picked] = rng.dirichlet(np.full(k, 2.0))
            continue
        picked = [rng.choice(late), rng.choice(early)]
        if k >= 3:
            picked.append(rng.choice(minor) if rng.random() < 0.6 else rng.choice(late))
        while len(picked) < k:
            picked.append(rng.choice(every))
        picked = np.unique(picked)
        x[row, picked] = rng.dirichlet(np.full(len(picked), 2.0))
    return x


def generate_alloys(  # noqa: PLR0917 (one count per label set, the overlap, noise and seed)
    n_resistivity: int,
    n_hardness: int,
    n_amorphous: int,
    overlap: int = 0,
    noise: NoiseLevels | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The study's table: ``alloy_id``, one atomic-percent column per element, the three targets.

    Args:
        n_resistivity: rows with a resistivity label (host alloys, 1-3 solutes up to 45 %).
        n_hardness: rows with only a hardness label (host alloys, 1-4 solutes up to 50 %).
        n_amorphous: rows with only an amorphous label (glass-forming families, 2-5 components).
        overlap: resistivity rows that also get a hardness label (the label sets "barely overlap").
        noise: measurement noise.
        seed: random seed (the same seed gives the same table).

    Raises:
        ValueError: a negative count, or ``overlap`` larger than ``n_resistivity``.
    """
    if min(n_resistivity, n_hardness, n_amorphous, overlap) < 0 or overlap > n_resistivity:
        raise ValueError(
            "generate_alloys: counts must be >= 0 and overlap <= n_resistivity, got "
            f"{n_resistivity}, {n_hardness}, {n_amorphous}, overlap {overlap}"
        )
    noise = noise or NoiseLevels()
    rng = np.random.default_rng(seed)
    ground = AlloyLaws()
    parts = [
        _host_alloys(rng, n_resistivity, (0.5, 0.35, 0.15), 0.45),
        _host_alloys(rng, n_hardness, (0.35, 0.3, 0.2, 0.15), 0.5),
        _glass_candidates(rng, n_amorphous),
    ]
    x = np.vstack(parts)
    family = np.repeat([0, 1, 2], [n_resistivity, n_hardness, n_amorphous])
    n = len(x)
    targets = {name: np.full(n, np.nan) for name in TARGETS}
    res = family == 0
    targets[RESISTIVITY][res] = ground.resistivity(x[res]) * rng.lognormal(0.0, noise.resistivity, res.sum())
    hard = family == 1
    hard[np.flatnonzero(res)[:overlap]] = True
    targets[HARDNESS][hard] = ground.hardness(x[hard]) * rng.lognormal(0.0, noise.hardness, hard.sum())
    amo = family == 2
    logit = ground.glass_logit(x[amo]) + rng.normal(0.0, noise.amorphous_logit, amo.sum())
    targets[AMORPHOUS][amo] = (logit > 0).astype(float)

    order = rng.permutation(n)
    frame = pd.DataFrame(np.round(100.0 * x, 4), columns=list(ELEMENTS))
    frame.insert(0, ID_COLUMN, [f"alloy-{i:06d}" for i in range(n)])
    for name in TARGETS:
        frame[name] = targets[name]
    frame = frame.iloc[order].reset_index(drop=True)
    frame[AMORPHOUS] = frame[AMORPHOUS].astype("Int64")
    logger.info(
        "generated %d alloys: %d resistivity, %d hardness, %d amorphous labels (%.0f %% amorphous)",
        n,
        int(frame[RESISTIVITY].notna().sum()),
        int(frame[HARDNESS].notna().sum()),
        int(frame[AMORPHOUS].notna().sum()),
        100.0 * float(frame[AMORPHOUS].mean()) if n_amorphous else 0.0,
    )
    return frame
