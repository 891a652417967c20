"""Instrument settings of images, for instrument-conditioned models (``alloy_mtl.mtl.models.conditioning``).

Training reads them from the metadata's ``instrument_<setting>`` columns (the settings the generator drew for
each image); prediction takes one instrument for the whole batch (fitted from the batch, calibrated, or
given by the user), or the metadata's columns where a table records them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from alloy_mtl.constants import INSTRUMENT_COLUMN_PREFIX

__all__ = ["conditioning_keys", "recorded_keys", "settings_array"]

logger = logging.getLogger(__name__)


def recorded_keys(metadata: pd.DataFrame) -> list[str]:
    """The instrument settings the metadata records (its ``instrument_<setting>`` columns), in column order."""
    return [
        c.removeprefix(INSTRUMENT_COLUMN_PREFIX)
        for c in metadata.columns
        if c.startswith(INSTRUMENT_COLUMN_PREFIX)
    ]


def conditioning_keys(
    metadata: pd.DataFrame, train_rows: np.ndarray, setting: Literal["auto"] | bool
) -> list[str]:
    """The settings a model is conditioned on: the recorded ones that vary over the training images.

    ``auto``: those (none: the model is not conditioned); ``true``: those, and at least one is required;
    ``false``: none.

    Raises:
        ValueError: ``true`` but no recorded setting varies over the training images (naming what was found),
            or a recorded setting has missing or non-numeric values in the training rows.
    """
    if setting is False:
        return []
    keys = recorded_keys(metadata)
    problems = []
    varying = []
    for key in keys:
        values = pd.to_numeric(metadata[INSTRUMENT_COLUMN_PREFIX + key].iloc[train_rows], errors="coerce")
        if values.isna().any():
            problems.append(
                f"{INSTRUMENT_COLUMN_PREFIX + key}: {int(values.isna().sum())} training row(s) missing or not a number"
            )
        elif values.nunique() > 1:
            varying.append(key)
    if problems:
        raise ValueError("instrument_conditioning: " + "; ".join(problems))
    if setting is True and not varying:
        found = ", ".join(INSTRUMENT_COLUMN_PREFIX + k for k in keys) or "no instrument_<setting> columns"
        raise ValueError(
            "instrument_conditioning: true needs instrument settings that vary over the training images "
            f"(metadata columns instrument_<setting>, e.g. generated with generation.tolerances); found {found}"
        )
    if keys and not varying:
        logger.info("instrument settings recorded but constant over the training images: not conditioned")
    return varying


def settings_array(
    keys: Sequence[str],
    n_images: int,
    metadata: pd.DataFrame | None = None,
    instrument: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """(N, K) settings of ``keys`` for ``n_images`` images: one ``instrument`` for all of them when given,
    else the metadata's ``instrument_<setting>`` columns.

    Raises:
        ValueError: naming every key the instrument or the metadata lacks, or a value that is not a finite
            number.
    """
    keys = list(keys)
    if instrument is not None:
        problems = [f"{k}: missing" for k in keys if k not in instrument]
        values = []
        for key in keys:
            if key not in instrument:
                continue
            try:
                value = float(instrument[key])
            except (TypeError, ValueError):
                value = float("nan")
            if not np.isfinite(value):
                problems.append(f"{key}: expected a finite number, got {instrument[key]!r}")
            values.append(value)
        if problems:
            raise ValueError(f"instrument: the model is conditioned on {keys}; " + "; ".join(problems))
        return np.tile(np.asarray(values, dtype=np.float32), (n_images, 1))
    columns = [INSTRUMENT_COLUMN_PREFIX + k for k in keys]
    missing = [c for c in columns if metadata is None or c not in metadata.columns]
    if missing:
        raise ValueError(
            f"instrument: the model is conditioned on the instrument ({keys}); give the instrument the images "
            f"were taken with (fitted from the batch, calibrated or known), or metadata columns {missing}"
        )
    table = metadata[columns].apply(pd.to_numeric, errors="coerce")
    bad = [c for c in columns if table[c].isna().any()]
    if bad:
        raise ValueError(f"instrument: metadata columns {bad} have missing or non-numeric values")
    return table.to_numpy(dtype=np.float32)
