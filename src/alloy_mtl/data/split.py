"""Train/val/test split: the lab's own split kept when the data carry one, else a long-tail-safe split
grouped by specimen, stratified by alloy and thickness, seeded.

Strategy (:func:`assign_split`): ``given`` keeps the ``given_split`` column (split folders of a
class-per-folder set, a CSV ``split`` column) after checking that no specimen crosses splits, every image has
a split and every alloy has the split minima; ``grouped`` splits as below; ``auto`` is ``given`` when the
data carry a split and ``grouped`` otherwise.

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
from alloy_mtl.data.errors import DataValidationError

STRATEGIES: tuple[str, ...] = ("auto", "given", "grouped")
GIVEN_COLUMN = "given_split"
LAB_SOURCE = "ingested"
"""The ``source`` of a lab's rows mixed into generated data (``alloy_mtl.data.lab_mix``)."""
#: Names labs give their split folders or CSV values (case-insensitive) -> the split.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
MAX_LISTED = 10
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


def canonical_split(name: object) -> str | None:
    """The split a folder name or CSV value means (``Valid`` -> ``val``), None for anything else."""
    return SPLIT_ALIASES.get(str(name).strip().lower()) if isinstance(name, str) else None


def resolve_strategy(metadata: pd.DataFrame, strategy: str) -> str:
    """``given`` or ``grouped``: what ``strategy`` means for these data.

    Raises:
        ValueError: an unknown strategy, or ``given`` for data that carry no split.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"split strategy {strategy!r}: expected one of {list(STRATEGIES)}")
    has_given = GIVEN_COLUMN in metadata.columns and bool(metadata[GIVEN_COLUMN].notna().any())
    if strategy == "auto":
        return "given" if has_given else "grouped"
    if strategy == "given" and not has_given:
        raise DataValidationError(
            "split.strategy 'given': the data carry no split (no train/val/test folders, no 'split' column "
            "in the metadata CSV); use strategy auto or grouped"
        )
    return strategy


def assign_split(
    metadata: pd.DataFrame,
    strategy: str = "auto",
    *,
    fractions: Mapping[str, float] | None = None,
    min_per_class: Mapping[str, int] | None = None,
    thickness_bins: int = 3,
    seed: int = 0,
) -> tuple[pd.Series, str]:
    """The split of every row and the strategy used (``given`` or ``grouped``, see the module docstring).

    A lab's images mixed into generated data (:func:`mixed_lab_rows`) all go to train; the generated rows are
    split as ``strategy`` says.

    Raises:
        DataValidationError: a given split that cannot be kept (every reason listed).
        ValueError: as :func:`split_dataset` for a grouped split.
    """
    lab = mixed_lab_rows(metadata)
    if lab.any():  # a lab's labelled images mixed into the simulation (data_source.lab_images) all train
        labels, used = assign_split(
            metadata[~lab],
            strategy,
            fractions=fractions,
            min_per_class=min_per_class,
            thickness_bins=thickness_bins,
            seed=seed,
        )
        return pd.concat([labels, pd.Series("train", index=metadata.index[lab], name="split")]).loc[
            metadata.index
        ], used
    used = resolve_strategy(metadata, strategy)
    if used == "given":
        return given_split(metadata, min_per_class), used
    return split_dataset(metadata, fractions, min_per_class, thickness_bins, seed), used


def mixed_lab_rows(metadata: pd.DataFrame) -> pd.Series:
    """Rows of a lab's images mixed into generated data (``source`` ingested beside generated rows)."""
    if "source" not in metadata.columns:
        return pd.Series(False, index=metadata.index)
    source = metadata["source"].astype(str)
    return (source == LAB_SOURCE) & bool((source == "generated").any())


def given_split(metadata: pd.DataFrame, min_per_class: Mapping[str, int] | None = None) -> pd.Series:
    """The data's own split (``given_split``), checked: every row has one, no specimen crosses splits, and
    every alloy has ``min_per_class`` specimens per split (default train 1, val 2, test 2).

    Raises:
        DataValidationError: listing every image without a split, crossing specimen and alloy short of a
            minimum, with the ways out.
    """
    minima = {"train": 1, **(DEFAULT_MIN_PER_CLASS if min_per_class is None else min_per_class)}
    given = metadata[GIVEN_COLUMN]
    problems = _unsplit_rows(metadata) + _crossing_specimens(metadata) + _short_minima(metadata, minima)
    if problems:
        raise DataValidationError(
            "the data's own train/val/test split cannot be kept (split.strategy auto or given):\n  "
            + "\n  ".join(problems)
            + "\nfix the split folders or the CSV 'split' column, lower split.min_per_class, or set "
            "split.strategy: grouped to re-split by specimen"
        )
    return pd.Series(given.astype(str), index=metadata.index, name="split", dtype=str)


def _listed(items: list[str]) -> str:
    more = len(items) - MAX_LISTED
    return ", ".join(items[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def _unsplit_rows(metadata: pd.DataFrame) -> list[str]:
    missing = metadata.loc[metadata[GIVEN_COLUMN].isna(), "image_id"].astype(str).tolist()
    return [f"{len(missing)} image(s) have no split: {_listed(missing)}"] if missing else []


def _crossing_specimens(metadata: pd.DataFrame) -> list[str]:
    labelled = metadata[metadata[GIVEN_COLUMN].notna()]
    per_split = labelled.groupby(["specimen_id", GIVEN_COLUMN], sort=True).size()
    n_splits = per_split.groupby(level=0).size()
    crossing = n_splits[n_splits > 1].index.tolist()
    described = [
        f"{specimen!r} ("
        + ", ".join(f"{split}: {n}" for split, n in per_split.loc[specimen].items())
        + " images)"
        for specimen in crossing
    ]
    if not described:
        return []
    return [
        f"{len(crossing)} specimen(s) cross splits (images of one specimen must share a split): "
        f"{_listed(described)}; a specimen is '<alloy folder>/<file stem>' or what "
        "data_source.options.specimen_pattern extracts, or the CSV 'specimen_id'"
    ]


def _short_minima(metadata: pd.DataFrame, minima: Mapping[str, int]) -> list[str]:
    labelled = metadata[metadata[GIVEN_COLUMN].notna()]
    counts = labelled.groupby(["alloy", GIVEN_COLUMN])["specimen_id"].nunique()
    problems = []
    for alloy in sorted(labelled["alloy"].astype(str).unique()):
        for split in SPLITS:
            have, need = int(counts.get((alloy, split), 0)), int(minima.get(split, 0))
            if have < need:
                problems.append(
                    f"alloy {alloy!r} has {have} specimen(s) in {split}, split.min_per_class.{split} needs {need}"
                )
    return problems


def split_summary(metadata: pd.DataFrame, split: pd.Series, strategy: str | None = None) -> pd.DataFrame:
    """Image counts per alloy (rows, in ALLOYS order) and split (columns, in SPLITS order) plus a total;
    with ``strategy``, a ``strategy`` column naming how the split was made."""
    table = pd.crosstab(metadata["alloy"].astype(str), split.reindex(metadata.index))
    alloys = [a for a in ALLOYS if a in table.index] + sorted(a for a in table.index if a not in ALLOYS)
    columns = [s for s in SPLITS if s in table.columns] + sorted(c for c in table.columns if c not in SPLITS)
    table = table.reindex(index=alloys, columns=columns, fill_value=0)
    table["total"] = table.sum(axis=1)
    if strategy is not None:
        table["strategy"] = strategy
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
