"""End to end: `kedro run --pipeline alloy_properties` on a tiny configuration, and a bad CSV writing nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from alloy_mtl.data.errors import DataValidationError

TINY = {
    "data": {"n_resistivity": 260, "n_hardness": 40, "n_amorphous": 40, "overlap": 1},
    "study": {
        "seeds": 2,
        "batch_size": 32,
        "model": {"hidden": [16]},
        "training": {"epochs": 2},
        "configurations": {
            "single_task": {"kind": "single_task"},
            "mtl_equal": {},
            "mtl_structured": {"kind": "structured"},
            "mtl_pcgrad": {"gradient_method": {"name": "pcgrad"}},
            "mtl_lds_gradnorm": {"gradient_method": {"name": "gradnorm"}, "lds": True},
        },
    },
}
REPORT = Path("data/08_reporting/alloy_properties")


@pytest.mark.slow
def test_pipeline_writes_the_report(kedro_project: Path, run_pipeline: Callable[..., dict[str, Any]]) -> None:
    run_pipeline(kedro_project, "alloy_properties", {"alloy_properties": TINY})
    for name in ("study_table.csv", "verdict.md", "findings.json", "validation_report.json",
                 "gradient_angles.png", "conflict_share.png", "relation_weights.png", "test_metrics.png"):  # fmt: skip
        assert (kedro_project / REPORT / name).is_file(), name
    table = pd.read_csv(kedro_project / REPORT / "study_table.csv")
    assert set(table["configuration"]) == set(TINY["study"]["configurations"])
    assert table["p_value"].notna().any()
    verdict = (kedro_project / REPORT / "verdict.md").read_text()
    assert "## The paper's findings on this data" in verdict and "mtl_pcgrad" in verdict
    relations = pd.read_csv(kedro_project / "data/07_model_output/alloy_properties/relation_weights.csv")
    assert len(relations) == 2 * 9


def test_bad_csv_fails_before_any_output(
    kedro_project: Path, run_pipeline: Callable[..., dict[str, Any]]
) -> None:
    csv = kedro_project / "alloys.csv"
    csv.write_text("Cu,Ni,resistivity,hardness,amorphous\n90,10,5,,\n50,40,,,\n")
    params = {"alloy_properties": {"data": {"source": "csv", "path": str(csv)}}}
    with pytest.raises(
        DataValidationError, match=r"alloys.csv: line 3, alloy_id=row-000001|alloys.csv: line 3"
    ):
        run_pipeline(kedro_project, "alloy_properties", params)
    written = [p for p in (kedro_project / "data").rglob("*") if p.is_file() and "alloy_properties" in str(p)]
    assert written == []
