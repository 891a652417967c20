"""Great Expectations suite: passes on good data, names failed expectations, writes Data Docs.

GX is slow to import and run, so one module-scoped fixture runs the suite twice: on good data and on data
with every defect at once (a specimen crossing splits, NaN pixels, a wrong thickness, a missing class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.expectations import expectation_table, raise_for_failures, run_expectations
from alloy_mtl.data.image_stats import image_statistics

from .conftest import make_metadata


def dataset() -> tuple[pd.DataFrame, np.ndarray]:
    md = make_metadata({"1050": 8, "2017": 4, "5083": 3, "6082": 3, "7075": 2}, images_per_specimen=2)
    md["split"] = np.where(md["specimen_id"].str.endswith("-0"), "test", "train")
    images = np.random.default_rng(0).random((len(md), 2, 4, 4), dtype=np.float32)
    return md, images


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("gx")
    md, images = dataset()
    good = run_expectations(md, image_statistics(images), root / "good_docs", {})

    bad_md, bad_images = md.copy(), images.copy()
    bad_md.loc[1, "split"] = "val"  # spec-1050-0: image 0 in test, image 1 in val
    bad_images[5, 1, 2, 3] = np.nan
    bad_md.loc[7, "thickness_mm"] = 500.0
    keep = bad_md["alloy"] != "7075"
    bad = run_expectations(
        bad_md[keep], image_statistics(bad_images[keep.to_numpy()]), root / "bad_docs", {"suite_name": "bad"}
    )
    return {"root": root, "good": good, "bad": bad}


def failed(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["column"]: e for e in summary["expectations"] if not e["success"]}


def test_good_data_passes(runs: dict[str, Any]) -> None:
    good = runs["good"]
    assert good["success"] is True
    assert failed(good) == {}
    assert len(good["expectations"]) == 8
    assert good["class_counts"] == {"1050": 16, "2017": 8, "5083": 6, "6082": 6, "7075": 4}
    assert good["imbalance_ratio"] == 4.0
    raise_for_failures(good, "good")  # does not raise


def test_data_docs_written(runs: dict[str, Any]) -> None:
    index = Path(runs["good"]["data_docs_index"])
    assert index == runs["root"] / "good_docs" / "index.html"
    assert index.is_file()
    assert "xray_dataset" in index.read_text()
    assert not (Path.cwd() / "gx").exists()


def test_defects_are_named(runs: dict[str, Any]) -> None:
    bad = runs["bad"]
    fails = failed(bad)
    assert bad["success"] is False
    assert set(fails) == {"specimen_n_splits", "n_nonfinite", "thickness_mm", "alloy"}
    assert fails["specimen_n_splits"]["unexpected_image_ids"] == ["img-1050-0-0", "img-1050-0-1"]
    assert fails["n_nonfinite"]["unexpected_image_ids"] == ["img-1050-2-1"]
    assert fails["n_nonfinite"]["partial_unexpected_list"] == [1]
    assert fails["thickness_mm"]["partial_unexpected_list"] == [500.0]
    assert fails["alloy"]["expectation"] == "expect_column_distinct_values_to_contain_set"
    assert bad["class_counts"]["7075"] == 0
    assert bad["imbalance_ratio"] is None
    assert Path(bad["data_docs_index"]).is_file()


def test_raise_for_failures_lists_expectations(runs: dict[str, Any]) -> None:
    with pytest.raises(DataValidationError) as err:
        raise_for_failures(runs["bad"], "dataset 01_raw")
    message = str(err.value)
    assert message.startswith("dataset 01_raw: 4 expectation(s) failed")
    assert "expect_column_values_to_be_between on column 'specimen_n_splits'" in message
    assert "expect_column_values_to_be_between on column 'n_nonfinite'" in message
    assert "img-1050-2-1" in message
    assert "expect_column_distinct_values_to_contain_set on column 'alloy'" in message


def test_expectation_table_helper_columns() -> None:
    md = make_metadata({"1050": 2}, images_per_specimen=2)
    md["split"] = ["train", "val", "test", "test"]
    table = expectation_table(md, image_statistics(np.zeros((4, 1, 2, 2))))
    assert table["specimen_n_splits"].tolist() == [2, 2, 1, 1]
    assert table["image_n_splits"].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="4 metadata rows but 3 statistics rows"):
        expectation_table(md, image_statistics(np.zeros((3, 1, 2, 2))))
