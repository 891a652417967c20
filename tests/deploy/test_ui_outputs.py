"""What a step shows in the Kubeflow UI: the executor output a container writes, and what the step reads."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

from alloy_mtl.deploy import step
from alloy_mtl.deploy.ui_outputs import confusion, headline_metrics, suite_metrics, write_executor_output

METRICS = {
    "classification": {
        "alloys": ["1050", "2017"],
        "accuracy": 0.75,
        "macro_ap": 0.8,
        "ap": {"1050": 0.9, "2017": 0.7},
        "confusion_matrix": [[3, 1], [0, 4]],
    },
    "regression": {
        "thickness": {"overall": {"r2": 0.95, "mae": 0.1}},
        "absorption": {"overall": {"r2": math.nan}},
    },
    "evaluation_set": {"classification": {"macro_ap": 0.85}},
}


def test_the_headline_scores_are_flat_finite_numbers_and_the_matrix_keeps_its_alloys():
    assert headline_metrics(METRICS) == {
        "test_macro_ap": 0.8,
        "test_accuracy": 0.75,
        "test_ap_1050": 0.9,
        "test_ap_2017": 0.7,
        "test_r2_thickness": 0.95,
        "test_mae_thickness": 0.1,
        "evaluation_set_macro_ap": 0.85,
    }  # absorption's NaN R2 is left out: the UI shows numbers
    assert confusion(METRICS) == (["1050", "2017"], [[3, 1], [0, 4]])
    assert confusion({"classification": {"alloys": ["1050"], "confusion_matrix": [[1, 0], [0, 1]]}}) is None


def test_a_container_step_declares_its_artifacts_metadata_in_the_executor_output(tmp_path: Path):
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    (tmp_path / "report.md").write_text("# Comparison\n")
    outputs = {
        name: (str(tmp_path / "outputs" / name), f"s3://bucket/run/{name}")
        for name in ("metrics", "confusion_matrix", "report")
    }
    write_executor_output(
        str(tmp_path / "kfp/output_metadata.json"),
        outputs,
        str(tmp_path / "metrics.json"),
        str(tmp_path / "report.md"),
    )
    written = json.loads((tmp_path / "kfp/output_metadata.json").read_text())["artifacts"]
    [metrics] = written["metrics"]["artifacts"]
    assert metrics["uri"] == "s3://bucket/run/metrics" and metrics["metadata"]["test_macro_ap"] == 0.8
    [matrix] = written["confusion_matrix"]["artifacts"]
    assert matrix["metadata"]["confusionMatrix"] == {
        "annotationSpecs": [{"displayName": "1050"}, {"displayName": "2017"}],
        "rows": [{"row": [3, 1]}, {"row": [0, 4]}],
    }
    assert (tmp_path / "outputs/report").read_text() == "# Comparison\n"  # the UI renders the file


def test_the_step_writes_them_only_after_its_nodes_succeeded(monkeypatch, tmp_path: Path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/metrics.json").write_text(json.dumps(METRICS))
    status = {"code": 1}
    monkeypatch.setattr(
        step.subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(command, status["code"])
    )
    output = tmp_path / "kfp/output_metadata.json"
    arguments = [
        "--pipeline", "train_all", "--nodes", "fnn.evaluate", "--project-dir", str(tmp_path),
        "--report-metrics", "data/metrics.json", "--kfp-output-file", str(output),
        "--kfp-artifact", "metrics", str(tmp_path / "m"), "s3://b/m",
    ]  # fmt: skip
    assert step.main(arguments) == 1 and not output.exists()  # a failed step declares nothing
    status["code"] = 0
    assert step.main(arguments) == 0
    assert (
        json.loads(output.read_text())["artifacts"]["metrics"]["artifacts"][0]["metadata"]["test_ap_2017"]
        == 0.7
    )


def test_the_suite_step_shows_every_models_summary(tmp_path: Path):
    fnn = {"same_detector": {"macro_ap": 0.99}, "summary": {"worst_macro_ap": 0.9, "n_conditions": 9.0}}
    limit = {"summary": {"worst_macro_ap": 0.98, "mean_macro_ap": math.nan}}
    assert suite_metrics({"fnn": fnn, "physics_limit": limit}) == {
        "fnn_worst_macro_ap": 0.9,
        "physics_limit_worst_macro_ap": 0.98,
    }  # a count and a NaN are not shown
    (tmp_path / "fnn.json").write_text(json.dumps(fnn))
    output = tmp_path / "kfp/output_metadata.json"
    metrics = (str(tmp_path / "m"), "s3://b/m")
    write_executor_output(str(output), {"metrics": metrics}, None, None, {"fnn": str(tmp_path / "fnn.json")})
    shown = json.loads(output.read_text())["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert shown == {"fnn_worst_macro_ap": 0.9}
