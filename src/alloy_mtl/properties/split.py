"""Train/val/test split of the alloy table, stratified by label set so that every task keeps the fractions."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from alloy_mtl.properties.generator import TARGETS

logger = logging.getLogger(__name__)

SPLIT_COLUMN = "split"


def label_set(df: pd.DataFrame, targets: tuple[str, ...] = TARGETS) -> pd.Series:
    """Which targets each row carries, as a string such as ``resistivity+hardness``."""
    present = df[list(targets)].notna().to_numpy()
    names = np.asarray(targets)
    return pd.Series(["+".join(names[row]) for row in present], index=df.index)


def split_alloys(df: pd.DataFrame, fractions: Mapping[str, float], seed: int = 0) -> pd.DataFrame:
    """``df`` with a ``split`` column (train/val/test), drawn per label set.

    Each label set's rows are shuffled and cut at the fractions (val and test get at least one row of a set
    with three or more rows), so a task with 100 labels gets about 70/15/15 of them.
    """
    rng = np.random.default_rng(seed)
    split = np.full(len(df), "train", dtype=object)
    for _, members in df.groupby(label_set(df), sort=True).indices.items():
        rows = rng.permutation(members)
        n = len(rows)
        n_val = int(round(fractions["val"] * n))
        n_test = int(round(fractions["test"] * n))
        if n >= 3:
            n_val, n_test = max(n_val, 1), max(n_test, 1)
        split[rows[:n_val]] = "val"
        split[rows[n_val : n_val + n_test]] = "test"
    out = df.copy()
    out[SPLIT_COLUMN] = split
    counts = {t: out.loc[out[t].notna(), SPLIT_COLUMN].value_counts().to_dict() for t in TARGETS if t in out}
    logger.info("split per task: %s", counts)
    return out
