"""Element data for the alloy-property study, read offline from mendeleev's bundled sqlite database.

Only elements with every property the laws and descriptors need are supported (:data:`ELEMENTS`); hosts of
the resistivity law also need a thermal conductivity (:data:`HOSTS`). Tin is left out on purpose: mendeleev
1.3 lists its alpha/beta transition (286 K) as the melting point.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Supported elements (composition columns of a CSV must be among them).
ELEMENTS: tuple[str, ...] = (
    "Al", "Cu", "Ni", "Fe", "Co", "Cr", "Ti", "V", "Zr", "Nb", "Hf", "Ta", "W", "Mo", "Mn",
    "Mg", "Zn", "Ag", "Au", "Pd", "Pt", "Y", "La", "B", "Si",
)  # fmt: skip

#: Elements that may be the host (majority) metal of a generated resistivity alloy (thermal conductivity known).
HOSTS: tuple[str, ...] = (
    "Al", "Cu", "Ni", "Fe", "Co", "Cr", "Ti", "V", "Zr", "Nb", "Hf", "Ta", "W",
    "Mg", "Zn", "Ag", "Au", "Pd", "Pt",
)  # fmt: skip

#: Columns of :func:`element_table` and their units.
PROPERTIES: dict[str, str] = {
    "atomic_weight": "g/mol",
    "radius": "pm (metallic radius, coordination 12)",
    "electronegativity": "Pauling",
    "phi": "V (Miedema work-function parameter phi*)",
    "nws13": "d.u.^(1/3) (cube root of Miedema's Wigner-Seitz electron density)",
    "molar_volume": "cm3/mol (Miedema)",
    "melting_point": "K",
    "valence": "electrons (group number; group - 10 for groups 11-14)",
    "thermal_conductivity": "W/(m K) (NaN where mendeleev has none)",
    "density": "g/cm3",
    "transition_metal": "1 for a d-block element",
}

_BUNDLED = "mendeleev's bundled database"


@functools.cache
def element_table() -> pd.DataFrame:
    """One row per element of :data:`ELEMENTS` (index: symbol), the columns of :data:`PROPERTIES`.

    Raises:
        RuntimeError: mendeleev lacks a value the study needs (a new mendeleev release changed its data).
    """
    from mendeleev.fetch import fetch_table  # slow import (sqlalchemy); only when the data is needed

    raw = fetch_table("elements").set_index("symbol")
    melting = fetch_table("phasetransitions").groupby("atomic_number")["melting_point"].first()
    rows = raw.loc[list(ELEMENTS)]
    group = rows["group_id"].to_numpy(dtype=float)
    table = pd.DataFrame(
        {
            "atomic_weight": rows["atomic_weight"].to_numpy(float),
            "radius": rows["metallic_radius_c12"].to_numpy(float),
            "electronegativity": rows["en_pauling"].to_numpy(float),
            "phi": rows["en_miedema"].to_numpy(float),
            "nws13": np.cbrt(rows["miedema_electron_density"].to_numpy(float)),
            "molar_volume": rows["miedema_molar_volume"].to_numpy(float),
            "melting_point": melting.reindex(rows["atomic_number"]).to_numpy(float),
            "valence": np.where(group >= 11, group - 10, group),
            "thermal_conductivity": rows["thermal_conductivity"].to_numpy(float),
            "density": rows["density"].to_numpy(float),
            "transition_metal": (rows["block"] == "d").to_numpy(float),
        },
        index=pd.Index(ELEMENTS, name="symbol"),
    )
    required = [c for c in table.columns if c != "thermal_conductivity"]
    missing = table[required].isna()
    hosts_missing = table.loc[list(HOSTS), "thermal_conductivity"].isna()
    if missing.to_numpy().any() or hosts_missing.any():
        where = [f"{s}.{c}" for s, c in zip(*np.nonzero(missing.to_numpy()), strict=True)]
        raise RuntimeError(
            f"{_BUNDLED} lacks values the study needs: {where} {list(hosts_missing[hosts_missing].index)}"
        )
    logger.debug("element table: %d elements from %s", len(table), _BUNDLED)
    return table


def property_matrix(symbols: list[str] | tuple[str, ...], columns: list[str]) -> np.ndarray:
    """(len(symbols), len(columns)) float array of element properties."""
    return element_table().loc[list(symbols), columns].to_numpy(dtype=np.float64)
