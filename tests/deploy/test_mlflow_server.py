"""Pods logging at the same time to one tracking server, as a Kubeflow run's steps do (a real `mlflow server`)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

pytestmark = pytest.mark.slow

STEPS = 4
METRICS = 40


def _step(uri: str, experiment_id: str, parent: str, name: str, folder: str) -> str:
    """One pod: a nested run, a metric history, an artifact and a model version of its own."""
    client = MlflowClient(uri, registry_uri=uri)
    run_id = client.create_run(experiment_id, run_name=name, tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id
    for step in range(METRICS):
        client.log_metric(run_id, "train_loss", 1.0 / (step + 1), step=step)
    report = Path(folder) / f"{name}.md"
    report.write_text(f"# {name}\n")
    client.log_artifact(run_id, str(report), artifact_path="reports")
    model = client.create_logged_model(experiment_id, source_run_id=run_id, name=name)
    client.create_model_version(
        "alloy_mtl_concurrent", source=f"models:/{model.model_id}", run_id=run_id, model_id=model.model_id
    )
    client.set_terminated(run_id)
    return run_id


def test_steps_logging_at_once_all_arrive_and_none_fails_on_a_locked_database(mlflow_server, tmp_path):
    uri = mlflow_server["uri"]
    client = MlflowClient(uri, registry_uri=uri)
    experiment_id = client.create_experiment("alloy_mtl")
    parent = client.create_run(experiment_id, run_name="kfp-run").info.run_id
    client.create_registered_model("alloy_mtl_concurrent")
    with ProcessPoolExecutor(max_workers=STEPS) as pool:
        futures = [
            pool.submit(_step, uri, experiment_id, parent, f"model_{i}", str(tmp_path)) for i in range(STEPS)
        ]
        run_ids = [future.result(timeout=240) for future in futures]  # an error in a pod fails here
    for run_id in run_ids:
        assert len(client.get_metric_history(run_id, "train_loss")) == METRICS
        assert [a.path for a in client.list_artifacts(run_id, "reports")] == [
            f"reports/{client.get_run(run_id).info.run_name}.md"
        ]
    versions = client.search_model_versions("name = 'alloy_mtl_concurrent'")
    assert sorted(int(v.version) for v in versions) == list(range(1, STEPS + 1))  # no version lost or doubled
    assert len(list(mlflow_server["artifacts"].rglob("model_*.md"))) == STEPS  # stored by the server itself
    assert "database is locked" not in mlflow_server["log"].read_text()
