"""Long-tail-safe train/val/test split: grouped by specimen, stratified by alloy and thickness, seeded.

How it works: specimens (never images) are assigned, so all images of a specimen share a split. Within each
alloy, specimens are ordered by thickness bin and, inside a bin, at random (``seed``); walking that order,
each specimen goes to the split whose share of the alloy's images is furthest below its target fraction.
This hits the fractions per alloy and, because neighbours in the order share a bin, roughly per thickness
bin too. Then minima are repaired: ``min_per_class`` counts **specimens** (each has at least one image, so
it bounds the images from below too, and independent specimens are what an evaluation needs). A split
short of its minimum for an alloy takes the smallest specimen from the split with the most specimens above
its own minimum. Train keeps at least one specimen of every alloy unless ``min_per_class`` says otherwise.

scikit-learn's StratifiedGroupKFold / GroupShuffleSplit were considered: they produce k equal folds or one
random cut, so they neither hit 70/15/15 with groups and strata at once nor guarantee per-class minima;
the repair would still be needed, so the direct allocation above is shorter and exact.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS, SPLITS

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}
DEFAULT_MIN_PER_CLASS: dict[str, int] = {"val": 2, "test": 2}
MISSING_BIN = -1


def split_dataset(
    metadata: pd.DataFrame,
    fractions: Mapping[str, float] | None = None,
    min_per_class: Mapping[str, int] | None = None,
    thickness_bins: int = 3,
    seed: int = 0,
) -> pd.Series:
    """Assign every row (image) of ``metadata`` to a split.

    Args:
        metadata: needs ``specimen_id``, ``alloy`` and ``thickness_mm`` (NaN allowed: its own bin).
        fractions: target share of each alloy's images per split (keys from SPLITS, summing to 1);
            default 0.7 / 0.15 / 0.15.
        min_per_class: minimum number of specimens of every alloy per split; default val 2, test 2
            (train defaults to 1).
        thickness_bins: number of quantile bins of specimen thickness used for stratification.
        seed: random seed; the same seed and data give the same split.

    Returns:
        Split label per row, index aligned with ``metadata``, named ``"split"``.

    Raises:
        ValueError: a missing column, bad fractions/minima, a specimen with several alloys, or an alloy with
            too few specimens to meet the minima (naming the alloy and the counts).
    """
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    minima = {"train": 1, **(DEFAULT_MIN_PER_CLASS if min_per_class is None else min_per_class)}
    _check_arguments(metadata, fractions, minima, thickness_bins)
    names = [s for s in SPLITS if s in fractions]
    minima = {s: int(minima.get(s, 0)) for s in names}
    specimens = _specimen_table(metadata, thickness_bins)
    rng = np.random.default_rng(seed)
    specimens["order"] = rng.permutation(len(specimens))
    target = np.array([fractions[s] for s in names])
    assignment: dict[str, int] = {}
    for alloy, group in specimens.groupby("alloy", sort=True):
        needed = sum(minima.values())
        if len(group) < needed:
            raise ValueError(
                f"split_dataset: alloy {alloy!r} has {len(group)} specimen(s) but the minima "
                f"{minima} need {needed}; lower min_per_class or add specimens of {alloy!r}"
            )
        ordered = group.sort_values(["bin", "order"])
        n_images = ordered["n_images"].to_numpy()
        labels = _allocate(n_images, target)
        labels = _repair_minima(labels, n_images, ordered["order"].to_numpy(), names, minima)
        assignment.update(zip(ordered.index, (names[i] for i in labels), strict=True))
    return pd.Series(metadata["specimen_id"].map(assignment), index=metadata.index, name="split", dtype=str)


def split_summary(metadata: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """Image counts per alloy (rows, in ALLOYS order) and split (columns, in SPLITS order) plus a total."""
    table = pd.crosstab(metadata["alloy"].astype(str), split.reindex(metadata.index))
    alloys = [a for a in ALLOYS if a in table.index] + sorted(a for a in table.index if a not in ALLOYS)
    columns = [s for s in SPLITS if s in table.columns] + sorted(c for c in table.columns if c not in SPLITS)
    table = table.reindex(index=alloys, columns=columns, fill_value=0)
    table["total"] = table.sum(axis=1)
    table.index.name, table.columns.name = "alloy", "split"
    return table


def _check_arguments(
    metadata: pd.DataFrame, fractions: dict[str, float], minima: dict[str, int], thickness_bins: int
) -> None:
    missing = [c for c in ("specimen_id", "alloy", "thickness_mm") if c not in metadata.columns]
    if missing:
        raise ValueError(f"split_dataset: metadata lacks column(s) {missing}")
    unknown = sorted(set(fractions) - set(SPLITS)) + sorted(set(minima) - set(SPLITS))
    if unknown:
        raise ValueError(
            f"split_dataset: unknown split name(s) {unknown}; expected names from {list(SPLITS)}"
        )
    if any(f < 0 for f in fractions.values()) or not np.isclose(sum(fractions.values()), 1.0):
        raise ValueError(f"split_dataset: fractions {fractions} must be >= 0 and sum to 1")
    if any(m < 0 for m in minima.values()):
        raise ValueError(f"split_dataset: min_per_class {minima} must be >= 0")
    if thickness_bins < 1:
        raise ValueError(f"split_dataset: thickness_bins must be >= 1, got {thickness_bins}")


def _specimen_table(metadata: pd.DataFrame, thickness_bins: int) -> pd.DataFrame:
    """One row per specimen: alloy, image count and thickness bin (quantiles of the median thickness)."""
    grouped = metadata.groupby("specimen_id", sort=True)
    n_alloys = grouped["alloy"].nunique()
    if (n_alloys > 1).any():
        bad = n_alloys[n_alloys > 1].index[:5].tolist()
        raise ValueError(f"split_dataset: specimen(s) {bad} have images of several alloys")
    table = pd.DataFrame(
        {
            "alloy": grouped["alloy"].first().astype(str),
            "n_images": grouped.size(),
            "thickness": grouped["thickness_mm"].median(),
        }
    )
    known = table["thickness"].notna()
    table["bin"] = MISSING_BIN
    if known.sum() > 1 and thickness_bins > 1:
        table.loc[known, "bin"] = pd.qcut(
            table.loc[known, "thickness"], thickness_bins, labels=False, duplicates="drop"
        ).astype(int)
    elif known.any():
        table.loc[known, "bin"] = 0
    return table


def _allocate(n_images: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Sequentially give each specimen to the split whose image share lags its target fraction the most."""
    assigned = np.zeros(len(target))
    labels = np.empty(len(n_images), dtype=int)
    total = 0.0
    for i, n in enumerate(n_images):
        total += n
        labels[i] = int(np.argmax(target * total - assigned))
        assigned[labels[i]] += n
    return labels


def _repair_minima(
    labels: np.ndarray, n_images: np.ndarray, order: np.ndarray, names: list[str], minima: dict[str, int]
) -> np.ndarray:
    """Move the smallest specimens from the split with the most surplus specimens into splits below minimum."""
    labels = labels.copy()
    need = np.array([minima[s] for s in names])
    for split in range(len(names)):
        while (counts := np.bincount(labels, minlength=len(names)))[split] < need[split]:
            surplus = counts - need
            surplus[split] = -1
            donor = int(np.argmax(surplus))
            candidates = np.flatnonzero(labels == donor)
            moved = candidates[np.lexsort((order[candidates], n_images[candidates]))[0]]
            labels[moved] = split
    return labels
