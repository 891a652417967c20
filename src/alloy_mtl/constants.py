"""Names shared by every layer of the project: alloys, metadata columns and tasks."""

from __future__ import annotations

ALLOYS: tuple[str, ...] = ("1050", "2017", "5083", "6082", "7075")
"""Alloy designations in canonical order; class index ``i`` is ``ALLOYS[i]``."""

METADATA_COLUMNS: tuple[str, ...] = (
    "image_id",
    "specimen_id",
    "alloy",
    "thickness_mm",
    "absorption",
    "kv",
    "source",
    "path",
)
"""Required columns of the per-image metadata table (the data contract)."""

SPLITS: tuple[str, ...] = ("train", "val", "test")

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASK_KINDS: tuple[str, ...] = (CLASSIFICATION, REGRESSION)
"""The kinds of task a ``TaskSpec`` can be."""

INSTRUMENT_COLUMN_PREFIX = "instrument_"
"""Optional metadata columns ``instrument_<setting>`` (e.g. ``instrument_kv_scale``): the instrument settings
an image was taken with, where they are known (the generator records the settings it drew). An
instrument-conditioned model trains on them."""
