"""The MLflow record of a PBT run: a nested run per trial, metrics per epoch, lineage and best config."""

from __future__ import annotations

from alloy_mtl.tracking.pbt import log_population
from alloy_mtl.tracking.runs import RunTracker
from alloy_mtl.tuning.lineage import best_configuration, extract_lineage, history_frame
from alloy_mtl.tuning.plot import population_progress
from tests.tuning.helpers import synthetic_log


def test_every_trial_gets_a_nested_run_under_the_tuning_run(mlflow_backend):
    client = mlflow_backend["client"]
    tracker = RunTracker(client, mlflow_backend["experiment_id"])
    parent = tracker.start_parent("tune_fnn", {}, {})
    rows = synthetic_log()
    history, lineage = history_frame(rows, "val_loss"), extract_lineage(rows)
    best = best_configuration(history, lineage, arch="fnn", metric="val_loss", mode="min", settings={})
    figure = population_progress(history, lineage, "val_loss")

    runs = log_population("fnn", rows, lineage, best, figure, tracker=tracker)

    assert sorted(runs) == ["A", "B", "C"]
    b = client.get_run(runs["B"])
    assert b.data.tags["mlflow.parentRunId"] == parent
    assert b.data.tags["alloy_mtl.pbt.exploit.0"].startswith("epoch 2 <- A@2: adam->sgd")
    assert b.data.params["initial.optimizer"] == "adam"
    steps = [(m.step, m.value) for m in client.get_metric_history(runs["B"], "val_loss")]
    assert steps == [(1, 2.0), (2, 1.9), (3, 0.7), (4, 0.6)]
    summary = tracker.children["fnn"]
    assert {a.path for a in client.list_artifacts(summary, "pbt")} == {
        "pbt/lineage.csv",
        "pbt/pbt_best.yml",
        "pbt/population_progress.png",
    }
    assert client.get_run(summary).data.tags["alloy_mtl.pbt.best_trial"] == "C"
    tracker.end_all()


def test_without_an_active_run_nothing_is_tracked():
    rows = synthetic_log()
    history, lineage = history_frame(rows, "val_loss"), extract_lineage(rows)
    best = best_configuration(history, lineage, arch="fnn", metric="val_loss", mode="min", settings={})
    assert log_population("fnn", rows, lineage, best) == {}
