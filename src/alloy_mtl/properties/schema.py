"""The alloy-property table's contract (pandera), checked with every problem collected before one error.

A table (a user's CSV or the generated data) has an optional ``alloy_id`` column, one column per element
(symbols of :data:`~.elements.ELEMENTS`, in atomic or weight percent), and the three target columns
``resistivity`` (micro-ohm cm, > 0), ``hardness`` (HV, > 0) and ``amorphous`` (0 or 1); a target may be
missing in a row, but every row needs at least one target and a composition that sums to 100 %.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa

from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.properties.elements import ELEMENTS, element_table
from alloy_mtl.properties.generator import AMORPHOUS, HARDNESS, ID_COLUMN, RESISTIVITY, TARGETS

logger = logging.getLogger(__name__)

MAX_ROWS_IN_MESSAGE = 10
UNITS = ("at%", "wt%")


def alloy_schema(elements: Sequence[str], total_tolerance: float) -> pa.DataFrameSchema:
    """The pandera schema of a table with these element columns."""
    percent = [pa.Check.ge(0.0), pa.Check.le(100.0)]
    columns = {
        ID_COLUMN: pa.Column(str, pa.Check.str_length(min_value=1), unique=True, required=False),
        **{e: pa.Column(float, percent, nullable=True, coerce=True) for e in elements},
        RESISTIVITY: pa.Column(float, pa.Check.gt(0.0), nullable=True, coerce=True),
        HARDNESS: pa.Column(float, pa.Check.gt(0.0), nullable=True, coerce=True),
        AMORPHOUS: pa.Column(float, pa.Check.isin([0.0, 1.0]), nullable=True, coerce=True),
    }
    element_list = list(elements)

    def sums_to_100(df: pd.DataFrame) -> pd.Series:
        total = df[element_list].apply(pd.to_numeric, errors="coerce").fillna(0.0).sum(axis=1)
        return (total - 100.0).abs() <= total_tolerance

    def has_a_target(df: pd.DataFrame) -> pd.Series:
        present = [t for t in TARGETS if t in df.columns]
        return df[present].apply(pd.to_numeric, errors="coerce").notna().any(axis=1)

    checks = [
        pa.Check(sums_to_100, name=f"composition sums to 100 +- {total_tolerance} %"),
        pa.Check(has_a_target, name="at least one of resistivity, hardness, amorphous is given"),
    ]
    return pa.DataFrameSchema(columns, checks=checks, strict=False, name="alloy_properties")


def _row_label(df: pd.DataFrame, row: object) -> str:
    if row not in df.index:
        return f"row {row}"
    position = int(df.index.get_loc(row))
    alloy = f", {ID_COLUMN}={df.loc[row, ID_COLUMN]}" if ID_COLUMN in df.columns else ""
    return f"line {position + 2}{alloy}"  # line 1 is the header


ROW_CHECKS = ("composition sums to 100", "at least one of")


def _describe(cases: pd.DataFrame, df: pd.DataFrame, where: str) -> list[str]:
    lines = []
    cases = cases.assign(column=cases["column"].fillna("<row>"), check=cases["check"].astype(str))
    row_check = cases["check"].str.startswith(ROW_CHECKS)
    cases.loc[row_check, "column"] = "<row>"
    cases = cases.drop_duplicates(subset=["column", "check", "index"])
    for (column, check), group in cases.groupby(["column", "check"], sort=False):
        if check == "column_in_dataframe":
            lines.append(f"{where}: missing required column {group['failure_case'].iloc[0]!r}")
            continue
        rows = [r for r in group["index"].tolist() if r is not None and not pd.isna(r)]
        if not rows:
            lines.append(f"{where}: column '{column}': expected {check} ({group['failure_case'].iloc[0]})")
            continue
        shown = []
        for row, value in list(zip(group["index"], group["failure_case"], strict=True))[:MAX_ROWS_IN_MESSAGE]:
            value_text = "" if column == "<row>" else f", value={value!r}"
            shown.append(f"{_row_label(df, row)}{value_text}")
        more = f" and {len(rows) - MAX_ROWS_IN_MESSAGE} more rows" if len(rows) > MAX_ROWS_IN_MESSAGE else ""
        place = "" if column == "<row>" else f"column '{column}' "
        lines.append(f"{where}: {place}{'; '.join(shown)}{more}: expected {check}")
    return lines


def validate_alloys(
    df: pd.DataFrame, where: str, unit: str = "at%", total_tolerance: float = 1.0
) -> pd.DataFrame:
    """Validate an alloy-property table and return it in atomic percent over every supported element.

    Args:
        df: the table as read (CSV strings or numbers).
        where: the file or dataset it came from; every message starts with it.
        unit: ``at%`` or ``wt%`` (the composition columns' unit).
        total_tolerance: allowed deviation of a row's composition total from 100 (percent points).

    Returns:
        ``alloy_id`` (made up as ``row-<n>`` where absent), one atomic-percent column per element of
        :data:`ELEMENTS` (0 where absent), ``resistivity``, ``hardness`` (float, NaN = missing) and
        ``amorphous`` (nullable Int64).

    Raises:
        DataValidationError: listing every problem: unknown or missing columns, values out of range or not
            numbers (file, line, alloy_id, column, value and the expectation), composition totals, rows
            without a target.
    """
    if unit not in UNITS:
        raise ValueError(f"{where}: composition unit {unit!r} unknown; expected one of {UNITS}")
    known = {ID_COLUMN, *TARGETS}
    unknown = [c for c in df.columns if c not in known and c not in ELEMENTS]
    problems = [
        f"{where}: column {c!r} is neither an element of {list(ELEMENTS)} nor one of {sorted(known)}"
        for c in unknown
    ]
    elements = [c for c in df.columns if c in ELEMENTS]
    if not elements:
        problems.append(f"{where}: no composition column; expected element columns such as 'Cu', 'Ni'")
    checked = df.drop(columns=unknown)
    if ID_COLUMN in checked.columns:
        checked[ID_COLUMN] = checked[ID_COLUMN].astype("string")
    for column in [*elements, *(t for t in TARGETS if t in checked.columns)]:
        checked[column], bad = _numbers(checked[column])
        problems += [
            f"{where}: column '{column}' {_row_label(df, row)}, value={value!r}: expected a number"
            for row, value in bad.items()
        ]
    try:
        checked = alloy_schema(elements, total_tolerance).validate(checked, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems += _describe(exc.failure_cases, checked, where)
    if problems:
        raise DataValidationError("\n".join(problems))
    return _normalised(checked, elements, unit)


def _numbers(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The column as floats (NaN where empty or not a number) and the entries that are not numbers."""
    numbers = pd.to_numeric(column, errors="coerce")
    bad = column[numbers.isna() & column.notna() & (column.astype("string").str.strip() != "")]
    return numbers.astype(np.float64), bad


def _normalised(df: pd.DataFrame, elements: list[str], unit: str) -> pd.DataFrame:
    values = df[elements].fillna(0.0).to_numpy(dtype=np.float64)
    if unit == "wt%":
        values = values / element_table().loc[elements, "atomic_weight"].to_numpy()[None, :]
    values = 100.0 * values / values.sum(axis=1, keepdims=True)
    out = pd.DataFrame(0.0, index=range(len(df)), columns=list(ELEMENTS))
    out[elements] = values
    ids = df[ID_COLUMN].astype(str).to_numpy() if ID_COLUMN in df.columns else None
    out.insert(0, ID_COLUMN, ids if ids is not None else [f"row-{i:06d}" for i in range(len(df))])
    for target in (RESISTIVITY, HARDNESS):
        out[target] = df[target].to_numpy(dtype=np.float64)
    out[AMORPHOUS] = pd.array(df[AMORPHOUS].to_numpy(), dtype="Float64").astype("Int64")
    logger.info(
        "validated %d alloys (%s): %s labels",
        len(out),
        unit,
        {t: int(out[t].notna().sum()) for t in TARGETS},
    )
    return out
