"""MLflow wiring of `kedro run`: fail before any node on an unusable URI; wrong settings are named."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from alloy_mtl.tracking.config import TrackingConfigError, TrackingUnavailableError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_tracking_server_fails_before_any_node_runs(kedro_project, run_pipeline, monkeypatch):
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrackingUnavailableError, match=rf"MLflow tracking server {uri} is unreachable"):
        run_pipeline(kedro_project, "data_processing")
    assert not (kedro_project / "data/01_raw/xray_store").exists()


def test_a_wrong_mlflow_yml_key_is_named(kedro_project, run_pipeline):
    (kedro_project / "conf/local/mlflow.yml").write_text("server:\n  tracking_uri: sqlite:///x.db\n")
    with pytest.raises(TrackingConfigError, match=r"unknown key 'server.tracking_uri'"):
        run_pipeline(kedro_project, "data_processing")


def test_inference_without_an_input_folder_fails_before_writing(kedro_project, run_pipeline):
    with pytest.raises(Exception, match=r"inference.input: not set"):
        run_pipeline(kedro_project, "inference")
    assert not (kedro_project / "data/07_model_output/inference").exists()


def test_a_missing_drift_reference_fails_inference_before_anything_is_written(kedro_project, run_pipeline):
    params = {"inference": {"input": str(kedro_project), "drift": {"reference": "/no/such/reference"}}}
    with pytest.raises(Exception, match=r"inference.drift.reference: '/no/such/reference' is not a folder"):
        run_pipeline(kedro_project, "inference", params)
    assert not (kedro_project / "data/07_model_output/inference").exists()
    assert not (kedro_project / "data/08_reporting/inference").exists()


def test_gate_inside_train_all_is_skipped_when_tracking_is_off():
    from alloy_mtl.pipelines.promotion.nodes import promote_champion
    from alloy_mtl.tracking import runs

    runs.set_active(None)
    decision, report = promote_champion(
        {"model_name": "alloy_mtl"}, {}, {}, {}, None, None, fnn_metrics={"classification": {}}
    )
    assert decision["decision"] == "skipped" and decision["changed"] is False
    assert "**skipped**" in report


def _name_the_run(project: Path, name: str) -> None:
    (project / "conf/local/mlflow.yml").write_text(f"tracking:\n  run:\n    name: {name}\n")


def _ingest_and_fail(run_pipeline, project: Path, folder: Path, match: str) -> None:
    with pytest.raises(Exception, match=match):
        run_pipeline(project, "data_processing", {"data_source": {"kind": "csv_folder", "path": str(folder)}})


def _only_run_named(client, name: str):
    experiment = client.get_experiment_by_name("alloy_mtl")
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{name}'")
    return run


def test_a_run_failing_mid_way_ends_failed(kedro_project, run_pipeline, isolated_mlflow):
    from mlflow.tracking import MlflowClient

    _name_the_run(kedro_project, "failing-data-source")
    # fails inside the first node
    _ingest_and_fail(run_pipeline, kedro_project, kedro_project / "no_such_lab_folder", "no_such_lab_folder")
    run = _only_run_named(MlflowClient(isolated_mlflow), "failing-data-source")
    assert run.info.status == "FAILED"
    assert run.data.tags["alloy_mtl.pipeline"] == "data_processing"


def test_a_run_the_ingest_stops_keeps_the_ingest_report(kedro_project, run_pipeline, isolated_mlflow):
    from mlflow.tracking import MlflowClient

    from tests.pipelines.test_data_processing import _write_lab_folder

    _name_the_run(kedro_project, "refused-lab-folder")
    lab = kedro_project / "lab"
    _write_lab_folder(lab, [1.0 + i for i in range(30)])
    (lab / "img3.png").write_bytes(b"not a png")
    _ingest_and_fail(run_pipeline, kedro_project, lab, "img3.png")
    client = MlflowClient(isolated_mlflow)
    run = _only_run_named(client, "refused-lab-folder")
    assert run.info.status == "FAILED"
    report = client.download_artifacts(run.info.run_id, "data/ingest_report.csv", str(kedro_project))
    assert "img3.png" in Path(report).read_text()
