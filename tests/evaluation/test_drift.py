"""The drift alarm's batching, parameters, table and report (the tests themselves: test_beam_drift,
test_detector_pattern; the node: tracking/test_drift_node)."""

from __future__ import annotations

import pytest

from alloy_mtl.config import ParameterError, parse_params
from alloy_mtl.evaluation.detector_pattern import PatternCheck
from alloy_mtl.evaluation.drift import (
    BatchDrift,
    DriftParams,
    batch_slices,
    drift_markdown,
    drift_metrics,
    drift_table,
)
from alloy_mtl.physics.beam_drift import BeamDrift


def test_batches_are_consecutive_and_a_short_remainder_joins_the_batch_before():
    assert batch_slices(440, 200, 50) == [slice(0, 200), slice(200, 440)]
    assert batch_slices(460, 200, 50) == [slice(0, 200), slice(200, 400), slice(400, 460)]
    assert batch_slices(49, 200, 50) == [] and batch_slices(120, 200, 50) == [slice(0, 120)]


def test_every_bad_drift_parameter_is_named_at_once():
    with pytest.raises(ParameterError) as err:
        parse_params(DriftParams, {"alpha": 0, "batch_size": 1, "search_ranges": {"dose_scale": [1, 2]}}, "x")
    message = str(err.value)
    assert (
        "x.alpha" in message and "x.batch_size" in message and "dose_scale: not a fitted setting" in message
    )


def _batch(index: int, statistic: float, similarity: float) -> BatchDrift:
    beam = BeamDrift(
        statistic=statistic,
        threshold=13.3,
        df=4,
        alpha=0.01,
        n_images=200,
        fitted={"kv_scale": 1.02 if statistic > 13.3 else 1.0, "al_filter_mm": 1.0},
        reference={"kv_scale": 1.0, "al_filter_mm": 1.0},
    )
    pattern = PatternCheck(
        similarity=similarity, expected=0.99, threshold=0.495, informative=True, n_images=200
    )
    return BatchDrift(index, f"a{index}.tif", f"z{index}.tif", beam, pattern)


def test_the_table_report_and_metrics_name_each_batch_and_why_it_alarmed(tmp_path):
    table = drift_table([_batch(0, 0.0, 0.99), _batch(1, 500.0, 0.99), _batch(2, 0.0, 0.01)])
    assert list(table["alarm"]) == [False, True, True]
    assert (
        "kv_scale 1 -> 1.02" in table.loc[1, "reasons"] and "another detector unit" in table.loc[2, "reasons"]
    )
    report = drift_markdown(table, "the reference folder /lab/ref", DriftParams())
    assert "**ALARM in 2 of 3 batch(es)**" in report and "calibrate_instrument" in report
    assert "a1.tif .. z1.tif" in report and "the reference folder /lab/ref" in report
    assert "set `inference.drift.reference`" in report  # the default reference is the simulated detector
    assert "set `inference.drift.reference`" not in drift_markdown(
        table, "x", DriftParams(reference=str(tmp_path))
    )
    metrics = drift_metrics(table)
    assert metrics["drift.alarms"] == 2 and metrics["drift.batch_1.beam_statistic"] == 500.0
    assert drift_metrics(drift_table([])) == {"drift.batches": 0.0}
