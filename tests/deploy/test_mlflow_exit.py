"""The exit handler's task: the MLflow parent run ends as the Kubeflow run ended (real sqlite MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alloy_mtl.deploy import mlflow_run


@pytest.fixture
def tracking(monkeypatch, tmp_path: Path) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "alloy_mtl")
    client = MlflowClient(uri)
    client.create_experiment("alloy_mtl", artifact_location=(tmp_path / "mlartifacts").as_uri())
    return client


def kubeflow_run(
    client: MlflowClient, kfp_run_id: str, parent_status: str = "FINISHED"
) -> tuple[str, str, str]:
    """A parent run as the steps left it (tagged by the first task), one nested run ended and one still open."""
    experiment = client.get_experiment_by_name("alloy_mtl").experiment_id
    parent = client.create_run(experiment, tags={mlflow_run.KFP_RUN_TAG: kfp_run_id}).info.run_id
    client.set_terminated(parent, status=parent_status)
    done, open_ = (
        client.create_run(experiment, tags={MLFLOW_PARENT_RUN_ID: parent, mlflow_run.KFP_RUN_TAG: kfp_run_id})
        for _ in range(2)
    )
    client.set_terminated(done.info.run_id, status="FINISHED")
    return parent, done.info.run_id, open_.info.run_id


def status(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.status


def test_a_failed_run_ends_its_parent_failed_and_its_open_nested_runs_killed(tracking):
    parent, done, open_ = kubeflow_run(tracking, "kfp-1")  # the last step to end it said FINISHED
    other, _, _ = kubeflow_run(tracking, "kfp-2")
    final = json.dumps({"state": "FAILED", "error": {"code": 9, "message": "resnet50: OOMKilled"}})
    assert mlflow_run.main(["--end", "--kfp-run-id", "kfp-1", "--final-status", final]) == 0
    assert (status(tracking, parent), status(tracking, done), status(tracking, open_)) == (
        "FAILED",
        "FINISHED",
        "KILLED",
    )
    tags = tracking.get_run(parent).data.tags
    assert (tags["kfp.final_state"], tags["kfp.error"]) == ("FAILED", "resnet50: OOMKilled")
    assert status(tracking, other) == "FINISHED"  # another Kubeflow run's parent is left alone


def test_a_succeeded_run_ends_its_parent_finished_even_after_a_retried_step_failed(tracking):
    parent, _, open_ = kubeflow_run(tracking, "kfp-3", parent_status="FAILED")
    mlflow_run.main(["--end", "--kfp-run-id", "kfp-3", "--final-status", json.dumps({"state": "SUCCEEDED"})])
    assert status(tracking, parent) == "FINISHED"
    assert status(tracking, open_) == "RUNNING"  # a succeeded run's nested runs are the steps' to end
    assert tracking.get_run(parent).data.tags["kfp.final_state"] == "SUCCEEDED"


def test_a_cancelled_run_is_killed_and_an_unreadable_status_counts_as_failed(tracking):
    parent, _, _ = kubeflow_run(tracking, "kfp-4")
    mlflow_run.end_parent_run("kfp-4", *mlflow_run.final_state('{"state": "CANCELLED"}'))
    assert status(tracking, parent) == "KILLED"
    assert mlflow_run.final_state("not json") == ("FAILED", "unreadable final status 'not json'")
    assert mlflow_run.final_state("") == ("FAILED", "")
    assert mlflow_run.final_state({"state": "succeeded"}) == ("SUCCEEDED", "")


def test_without_a_parent_or_a_tracking_uri_there_is_nothing_to_end(tracking, monkeypatch, caplog):
    assert mlflow_run.end_parent_run("no-such-run", "FAILED") is None
    assert "no MLflow parent run is tagged kfp.run_id=no-such-run" in caplog.text
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert mlflow_run.end_parent_run("kfp-1", "FAILED") is None
    with pytest.raises(SystemExit):
        mlflow_run.main(["--end"])  # names the missing --kfp-run-id
