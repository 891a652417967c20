"""Pandera metadata schema: every rule reported with where, column, row, image id and the rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.schema import validate_metadata


def test_valid_metadata_passes_and_coerces(metadata: pd.DataFrame) -> None:
    metadata = metadata.assign(thickness_mm=np.arange(1, len(metadata) + 1), split="train")
    metadata.loc[0, "absorption"] = np.nan
    out = validate_metadata(metadata, where="m.csv")
    assert out["thickness_mm"].dtype == np.float64
    assert out["thickness_mm"].iloc[4] == 5.0


def test_negative_thickness_names_row_and_rule(metadata: pd.DataFrame) -> None:
    metadata.loc[3, "thickness_mm"] = -1.0
    with pytest.raises(DataValidationError) as err:
        validate_metadata(metadata, where="metadata.csv")
    message = str(err.value)
    assert "metadata.csv: column 'thickness_mm' row 3 (image_id=img-1050-1-1" in message
    assert "greater_than(0)" in message


def test_all_failures_collected(metadata: pd.DataFrame) -> None:
    metadata.loc[2, "image_id"] = metadata.loc[1, "image_id"]
    metadata.loc[7, "alloy"] = "6061"
    metadata.loc[9, "specimen_id"] = ""
    metadata.loc[10, "source"] = "scanned"
    metadata.loc[11, "absorption"] = 0.0
    with pytest.raises(DataValidationError) as err:
        validate_metadata(metadata, where="ds")
    lines = str(err.value).splitlines()
    assert len(lines) == 5
    assert any(
        "'image_id' row 1" in line and "row 2" in line and "field_uniqueness" in line for line in lines
    )
    assert any("'alloy' row 7" in line and "'6061'" in line and "'1050', '2017'" in line for line in lines)
    assert any("'specimen_id' row 9" in line and "str_length" in line for line in lines)
    assert any("'source' row 10" in line and "generated" in line for line in lines)
    assert any("'absorption' row 11" in line for line in lines)


def test_missing_column_named(metadata: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"ds: missing required column\(s\) 'kv'"):
        validate_metadata(metadata.drop(columns="kv"), where="ds")


def test_bad_split_value(metadata: pd.DataFrame) -> None:
    metadata["split"] = ["train"] * (len(metadata) - 1) + ["holdout"]
    with pytest.raises(DataValidationError, match=r"column 'split' row 59 .*'holdout'"):
        validate_metadata(metadata, where="ds")


def test_empty_class_named(metadata: pd.DataFrame) -> None:
    without = metadata[metadata["alloy"] != "5083"]
    with pytest.raises(DataValidationError, match="ds: alloy '5083' has no images"):
        validate_metadata(without, where="ds")
    assert len(validate_metadata(without, where="ds", required_alloys=None)) == 48
    assert len(validate_metadata(without, where="ds", required_alloys=["1050"])) == 48
