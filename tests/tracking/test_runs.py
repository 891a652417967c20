"""Parent and nested runs, the epoch callback, what each dataset logs, and who may write."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alloy_mtl.tracking import runs
from alloy_mtl.tracking.callback import MlflowEpochCallback, training_callbacks
from alloy_mtl.tracking.layout import dataset_fingerprint, log_dataset, route
from alloy_mtl.tracking.promotion import MODEL_URI_TAG
from alloy_mtl.tracking.runs import RunTracker


@pytest.fixture
def tracker(mlflow_backend):
    tracker = RunTracker(mlflow_backend["client"], mlflow_backend["experiment_id"])
    tracker.start_parent("train_all", {"alloy_mtl.pipeline": "train_all"}, {"training": {"epochs": 2}})
    runs.set_active(tracker)
    yield tracker
    runs.set_active(None)
    tracker._kill_if_open()  # no run left RUNNING by a test


def test_nested_runs_inherit_tags_and_log_epochs_metrics_and_artifacts(
    tracker, mlflow_backend, bundle_factory, tmp_path
):
    client = mlflow_backend["client"]
    [callback] = training_callbacks("fnn")
    for epoch, loss in ((1, 1.5), (2, 1.2)):
        callback.on_epoch_end(
            None, epoch, {"epoch": epoch, "train_loss": loss, "val_alloy_acc": 0.5, "lr": 1e-3}
        )
    tracker.set_tags_everywhere({"alloy_mtl.dataset_fingerprint": "abc"})
    figure = plt.figure()
    log_dataset(tracker, "fnn.figures", {"pr_curves.png": figure})
    plt.close(figure)
    log_dataset(tracker, "fnn.metrics", {"classification": {"macro_ap": 0.75, "ap": {"1050": 0.5}}})
    log_dataset(tracker, "fnn.training_summary", {"n_params": 10, "params": {"arch": "fnn", "lr": 0.01}})
    log_dataset(tracker, "fnn.model", bundle_factory())
    log_dataset(tracker, "comparison_table", pd.DataFrame({"model": ["fnn"], "macro_ap": [0.75]}))
    log_dataset(tracker, "ingest_report", pd.DataFrame({"file": ["a.png"], "status": ["missing"]}))
    (tmp_path / "roc_curves.png").write_bytes(b"png written by the catalog")
    log_dataset(tracker, "ensemble_soft.figures", {"roc_curves.png": object()}, saved_path=tmp_path)
    tracker.end_all()

    ensemble = tracker.children["ensemble_soft"]
    assert [a.path for a in client.list_artifacts(ensemble, "figures")] == ["figures/roc_curves.png"]
    child = client.get_run(tracker.children["fnn"])
    assert child.data.tags[MLFLOW_PARENT_RUN_ID] == tracker.parent_run_id
    assert child.data.tags["alloy_mtl.pipeline"] == "train_all"
    assert child.data.tags["alloy_mtl.dataset_fingerprint"] == "abc"
    assert child.data.tags[MODEL_URI_TAG].startswith("models:/m-")
    history = client.get_metric_history(child.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.5), (2, 1.2)]
    assert child.data.metrics["test.classification.macro_ap"] == 0.75
    assert child.data.params["lr"] == "0.01"
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"metrics.json", "training_summary.json", "figures"} <= artifacts
    assert [a.path for a in client.list_artifacts(child.info.run_id, "figures")] == ["figures/pr_curves.png"]
    parent = client.get_run(tracker.parent_run_id)
    assert parent.data.params["training.epochs"] == "2"
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "comparison")] == [
        "comparison/comparison.csv"
    ]
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "data")] == ["data/ingest_report.csv"]
    assert {parent.info.status, child.info.status} == {"FINISHED"}


def test_failed_work_ends_failed_and_nothing_stays_running(tracker, mlflow_backend):
    tracker.child("resnet18")
    tracker.child("fnn")
    tracker.end_all({"resnet18": "FAILED"}, parent_status="FAILED")
    client = mlflow_backend["client"]
    statuses = {key: client.get_run(run_id).info.status for key, run_id in tracker.children.items()}
    assert statuses == {"resnet18": "FAILED", "fnn": "FINISHED"}
    assert client.get_run(tracker.parent_run_id).info.status == "FAILED"


def test_an_interrupted_run_is_ended_killed_at_exit(tracker, mlflow_backend):
    tracker.child("fnn")
    tracker._kill_if_open()  # what atexit calls after Ctrl-C
    client = mlflow_backend["client"]
    assert client.get_run(tracker.children["fnn"]).info.status == "KILLED"
    assert client.get_run(tracker.parent_run_id).info.status == "KILLED"


def test_only_the_owning_process_writes(tracker, monkeypatch, mlflow_backend):
    run_id = tracker.child("fnn")
    monkeypatch.setattr(tracker, "_pid", -1)  # as seen from a forked DataLoader worker
    assert training_callbacks("fnn") == []
    MlflowEpochCallback(tracker, run_id).on_epoch_end(None, 1, {"train_loss": 1.0})
    assert tracker.child("resnet18") is None
    monkeypatch.setattr(tracker, "_pid", __import__("os").getpid())
    monkeypatch.setenv("RANK", "1")  # a DDP rank > 0
    tracker.log_metrics(run_id, {"train_loss": 2.0})
    assert mlflow_backend["client"].get_run(run_id).data.metrics == {}


def test_routes_and_fingerprint():
    assert route("resnet18.metrics") == ("resnet18", "metrics")
    assert route("ensemble_soft.figures") == ("ensemble_soft", "figures")
    assert route("comparison_table") == (None, "comparison_table")
    assert route("model_input") is None and route("resnet18.checkpoint") is None
    images = np.zeros((2, 1, 4, 4), np.float16)
    meta = pd.DataFrame({"image_id": ["a", "b"]})
    assert dataset_fingerprint(images, meta) == dataset_fingerprint(images.copy(), meta.copy())
    assert dataset_fingerprint(images + 1, meta) != dataset_fingerprint(images, meta)
    json.dumps(dataset_fingerprint(images, meta))


def test_steps_of_one_kubeflow_run_join_its_parent_and_share_one_nested_run_per_model(mlflow_backend):
    client, experiment = mlflow_backend["client"], mlflow_backend["experiment_id"]
    parent = client.create_run(experiment, run_name="kfp-run").info.run_id  # the first step's parent
    client.set_terminated(parent)

    def step(statuses=None, parent_status="FINISHED", params=None):
        tracker = RunTracker(client, experiment)
        tracker.join_parent(
            parent, {"alloy_mtl.pipeline": "train_all"}, params or {"training": {"epochs": 1}}
        )
        assert client.get_run(parent).info.status in {"RUNNING", "FAILED"}
        fnn = tracker.child("fnn")
        tracker.end_all(statuses, parent_status)
        return fnn

    first = step()
    assert client.get_run(parent).info.status == "FINISHED"
    assert (
        step(params={"training": {"epochs": 2}}) == first
    )  # reused; a second value is not logged over the first
    assert client.get_run(parent).data.params == {"training.epochs": "1"}
    assert client.get_run(parent).data.tags["alloy_mtl.pipeline"] == "train_all"
    step({"fnn": "FAILED"}, "FAILED")
    step()  # a step beside the failed one finishes later: the run still says FAILED
    assert client.get_run(parent).info.status == "FAILED"
    assert client.get_run(first).info.status == "FAILED"
    nested = client.search_runs([experiment], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent}'")
    assert [r.info.run_id for r in nested] == [first]
