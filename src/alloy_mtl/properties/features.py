"""Composition descriptors: composition-weighted means and spreads of element properties (Magpie-style,
Ward et al. 2016), plus the number of components and the largest fraction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alloy_mtl.properties.elements import element_table

#: Element properties described by a weighted mean and a weighted spread.
DESCRIBED: tuple[str, ...] = (
    "radius",
    "electronegativity",
    "phi",
    "nws13",
    "molar_volume",
    "melting_point",
    "atomic_weight",
    "valence",
)
#: An element counts as a component from this atomic fraction on.
COMPONENT_THRESHOLD = 0.01


def composition_features(fractions: pd.DataFrame, properties: tuple[str, ...] = DESCRIBED) -> pd.DataFrame:
    """Descriptors of each composition.

    Args:
        fractions: one row per alloy, one column per element symbol (atomic fractions or percent; each row
            is normalised to sum 1; missing values count as 0).
        properties: element properties to describe (columns of :func:`~.elements.element_table`).

    Returns:
        Same index; ``mean_<p>`` (``sum_i c_i p_i``) and ``spread_<p>`` (``sqrt(sum_i c_i (p_i - mean)^2)``) per
        property, ``n_components`` (fractions >= 1 %) and ``max_fraction``.

    Raises:
        ValueError: an unknown element column, or a row without any element.
    """
    table = element_table()
    unknown = sorted(set(fractions.columns) - set(table.index))
    if unknown:
        raise ValueError(f"composition_features: unknown element column(s) {unknown}")
    c = fractions.fillna(0.0).to_numpy(dtype=np.float64)
    totals = c.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError(
            f"composition_features: rows {np.flatnonzero(totals[:, 0] <= 0)[:10].tolist()} are empty"
        )
    c = c / totals
    values = table.loc[list(fractions.columns), list(properties)].to_numpy(dtype=np.float64)
    mean = c @ values
    spread = np.sqrt(np.maximum(c @ np.square(values) - np.square(mean), 0.0))
    out = {}
    for j, name in enumerate(properties):
        out[f"mean_{name}"] = mean[:, j]
        out[f"spread_{name}"] = spread[:, j]
    out["n_components"] = (c >= COMPONENT_THRESHOLD).sum(axis=1).astype(np.float64)
    out["max_fraction"] = c.max(axis=1)
    return pd.DataFrame(out, index=fractions.index)
