"""Pandera schema of the per-image metadata table and a validator that reports every failure at once."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import pandera.pandas as pa

from alloy_mtl.constants import ALLOYS, SPLITS
from alloy_mtl.data.errors import DataValidationError

SOURCES: tuple[str, ...] = ("generated", "ingested")
MAX_ROWS_IN_MESSAGE = 10


def metadata_schema() -> pa.DataFrameSchema:
    """The data contract as a pandera schema (extra columns are allowed).

    ``thickness_mm`` and ``absorption`` are coerced to float (integers in a CSV are fine) and may be
    missing; ``split`` and ``given_split`` are optional columns that must hold a value of ``SPLITS``.
    """
    non_empty = pa.Check.str_length(min_value=1)
    return pa.DataFrameSchema(
        {
            "image_id": pa.Column(str, non_empty, unique=True),
            "specimen_id": pa.Column(str, non_empty),
            "alloy": pa.Column(str, pa.Check.isin(list(ALLOYS))),
            "thickness_mm": pa.Column(float, pa.Check.gt(0), nullable=True, coerce=True),
            "absorption": pa.Column(float, pa.Check.gt(0), nullable=True, coerce=True),
            "kv": pa.Column(str),
            "source": pa.Column(str, pa.Check.isin(list(SOURCES))),
            "path": pa.Column(str),
            "split": pa.Column(str, pa.Check.isin(list(SPLITS)), required=False),
            "given_split": pa.Column(str, pa.Check.isin(list(SPLITS)), nullable=True, required=False),
        },
        strict=False,
        name="xray_metadata",
    )


def validate_metadata(
    df: pd.DataFrame, where: str, required_alloys: Iterable[str] | None = ALLOYS
) -> pd.DataFrame:
    """Validate ``df`` against :func:`metadata_schema` and check that no required alloy is empty.

    Args:
        df: metadata table, one row per image.
        where: the file or dataset the table came from; every error line starts with it.
        required_alloys: alloys that must have at least one image (``None`` or empty: no check).

    Returns:
        The validated table (numeric columns coerced to float).

    Raises:
        DataValidationError: listing every failure, e.g. ``"metadata.csv: column 'thickness_mm' row 3
            (image_id=img-3): failed greater_than(0) (value -1.0)"``.
    """
    problems: list[str] = []
    validated = df
    try:
        validated = metadata_schema().validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems.extend(_describe_failures(exc.failure_cases, df, where))
    if required_alloys and "alloy" in df.columns:
        present = set(df["alloy"].astype(str))
        for alloy in required_alloys:
            if alloy not in present:
                problems.append(
                    f"{where}: alloy '{alloy}' has no images (every alloy in {list(required_alloys)} needs >= 1)"
                )
    if problems:
        raise DataValidationError("\n".join(problems))
    return validated


def _describe_failures(cases: pd.DataFrame, df: pd.DataFrame, where: str) -> list[str]:
    """One message line per (column, check), naming rows, image ids and the failing values."""
    lines = []
    cases = cases.assign(column=cases["column"].fillna("<table>"), check=cases["check"].astype(str))
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        if check == "column_in_dataframe":
            missing = ", ".join(repr(c) for c in group["failure_case"])
            lines.append(f"{where}: missing required column(s) {missing}")
            continue
        rows = [r for r in group["index"].tolist() if r is not None and not pd.isna(r)]
        if not rows:
            lines.append(f"{where}: column '{column}': failed {check} ({group['failure_case'].iloc[0]})")
            continue
        described = []
        for row, value in list(zip(group["index"], group["failure_case"], strict=True))[:MAX_ROWS_IN_MESSAGE]:
            image_id = _image_id_at(df, row)
            described.append(f"row {row} (image_id={image_id}, value={value!r})")
        more = f" and {len(rows) - MAX_ROWS_IN_MESSAGE} more rows" if len(rows) > MAX_ROWS_IN_MESSAGE else ""
        lines.append(f"{where}: column '{column}' {'; '.join(described)}{more}: failed {check}")
    return lines


def _image_id_at(df: pd.DataFrame, row: object) -> object:
    """The image_id of index label ``row`` ("?" when there is no such column or row)."""
    if "image_id" not in df.columns or row not in df.index:
        return "?"
    value = df.loc[row, "image_id"]
    return value.iloc[0] if isinstance(value, pd.Series) else value
