"""The generator's structure and the CSV contract (every problem collected, named by file/line/column)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.properties.generator import TARGETS, generate_alloys
from alloy_mtl.properties.schema import validate_alloys
from alloy_mtl.properties.split import split_alloys


def test_generated_label_sets_are_disjoint_with_the_imbalance() -> None:
    frame = generate_alloys(650, 10, 11, overlap=1, seed=3)
    labels = frame[list(TARGETS)].notna()
    assert labels.sum().to_dict() == {"resistivity": 650, "hardness": 11, "amorphous": 11}
    assert int((labels.sum(axis=1) > 1).sum()) == 1
    assert (labels.sum(axis=1) >= 1).all()
    assert frame.equals(generate_alloys(650, 10, 11, overlap=1, seed=3))
    validated = validate_alloys(frame, "generated")  # the generator honours the contract
    assert len(validated) == len(frame)


def test_split_keeps_each_task_s_fractions() -> None:
    frame = split_alloys(generate_alloys(400, 40, 40, seed=0), {"train": 0.7, "val": 0.15, "test": 0.15})
    for task in TARGETS:
        counts = frame.loc[frame[task].notna(), "split"].value_counts()
        assert counts["val"] >= 1 and counts["test"] >= 1
        assert counts["train"] / counts.sum() == pytest.approx(0.7, abs=0.05)


BAD = """alloy_id,Cu,Ni,Sn,resistivity,hardness,amorphous
a1,90,10,0,5.0,,
a2,50,40,,,,
a3,60,40,,-3,abc,2
"""


def test_bad_csv_lists_every_problem() -> None:
    with pytest.raises(DataValidationError) as info:
        validate_alloys(pd.read_csv(io.StringIO(BAD), dtype=str), "alloys.csv")
    message = str(info.value)
    lines = message.splitlines()
    assert all(line.startswith("alloys.csv: ") for line in lines)
    assert "column 'Sn' is neither an element" in message
    assert "column 'hardness' line 4, alloy_id=a3, value='abc': expected a number" in message
    assert "line 3, alloy_id=a2: expected composition sums to 100" in message
    assert "line 3, alloy_id=a2: expected at least one of resistivity, hardness, amorphous" in message
    assert "column 'resistivity' line 4, alloy_id=a3, value=-3.0: expected greater_than(0.0)" in message
    assert "column 'amorphous' line 4, alloy_id=a3, value=2.0: expected isin" in message


def test_missing_target_column_is_named() -> None:
    with pytest.raises(DataValidationError, match="missing required column 'hardness'"):
        validate_alloys(pd.read_csv(io.StringIO("Cu,resistivity,amorphous\n100,2,\n")), "x.csv")


def test_weight_percent_is_converted_to_atomic_percent() -> None:
    frame = pd.read_csv(io.StringIO("Cu,Ni,resistivity,hardness,amorphous\n50,50,10,,\n"))
    out = validate_alloys(frame, "wt.csv", unit="wt%")
    cu, ni = 50 / 63.546, 50 / 58.6934
    assert out.loc[0, "Cu"] == pytest.approx(100 * cu / (cu + ni))
    assert out.loc[0, "Ni"] + out.loc[0, "Cu"] == pytest.approx(100.0)
    assert out.loc[0, "alloy_id"] == "row-000000"
