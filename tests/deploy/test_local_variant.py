"""The local variant of train_all runs end to end under kfp.local: grouping and data hand-over really run.

Same plan as the cluster YAML (steps, order, parameters), lightweight components instead of containers,
each calling the step entry point, so ``kedro run --nodes ...`` per group, on a tiny configuration, logging to
a real ``mlflow server`` on loopback as a cluster's pods do.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from alloy_mtl.pipelines.training import ARCHITECTURES

TINY = {
    "generation": {"n_images": 200, "image_size": 32, "min_images_per_class": 18, "images_per_specimen": 3},
    "training": {"epochs": 3, "batch_size": 16, "max_train_images": 48, "progress_bar": False},
    "evaluation": {
        "evaluation_set": {"n_images": 60},
        "bootstrap": {"n_resamples": 50},
        "ensemble_selection": {"n_images": 60, "units": 2},
        "robustness": {"n_images": 60, "n_resamples": 20},
    },
    "unknown_materials": {
        "known_images": 100,
        "images_per_designation": 10,
        "reference_images": 100,
        "batch_size": 50,
        "instrument_sessions": 2,  # 8 sessions need 120 known images (a specimen per alloy each)
    },
    # the architectures whose CPU default sets its own epochs (conf/base) get the tiny budget too
    **{
        arch: {"train_options": {"epochs": 1}}
        for arch in ("resnet18", "resnet50", "vgg16", "efficientnet_b0", "fnn")
    },
}


@pytest.mark.slow
def test_local_variant_runs_every_group_and_hands_data_over(
    kedro_project, tmp_path, monkeypatch, capfd, mlflow_server
):
    from kfp import local

    from alloy_mtl.deploy.local import build_local_pipeline
    from alloy_mtl.deploy.plan import build_plan
    from alloy_mtl.deploy.project import load_project

    (kedro_project / "conf" / "tiny").mkdir()
    (kedro_project / "conf" / "tiny" / "parameters.yml").write_text(yaml.safe_dump(TINY))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server["uri"])
    plan = build_plan(load_project(kedro_project, "tiny"), "train_all")
    assert [step.group for step in plan.steps] == [
        "data",
        "unknown_materials",  # depends on nothing: beside the data step
        *sorted(ARCHITECTURES),
        "comparison",
        "robustness",
        "promotion",
    ]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp_outputs"))
    build_local_pipeline(plan, kedro_project)(epochs=1)  # the pipeline parameter overrides the env's 3

    data = kedro_project / "data"
    assert (data / "06_models/physics_unknown_score.pkl").stat().st_size > 0
    assert json.loads((data / "08_reporting/unknown_materials/ood_report.json").read_text())["evaluated"]
    for arch in ARCHITECTURES:
        assert (data / f"06_models/{arch}/model.pt").stat().st_size > 0
        assert (data / f"08_reporting/{arch}/metrics.json").exists()
    history = pd.read_csv(data / "07_model_output/resnet34/history.csv")  # one without epochs of its own
    assert len(history) == 1  # epochs=1 reached the training step through kedro run --params
    table = pd.read_csv(data / "08_reporting/comparison.csv")
    assert set(ARCHITECTURES) <= set(table["model"])

    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = MlflowClient(mlflow_server["uri"])
    # one experiment, the one conf/base/mlflow.yml names, as a workstation's kedro run uses
    assert {e.name for e in client.search_experiments()} - {"Default"} == {"alloy_mtl"}
    experiment = client.get_experiment_by_name("alloy_mtl")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # artifacts go through the server
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if MLFLOW_PARENT_RUN_ID not in r.data.tags]
    assert len(parents) == 1  # the first step opened one parent run ...
    parent = parents[0].info
    logs = capfd.readouterr()
    # ... every step ran with its id as MLFLOW_RUN_ID and joined it: one nested run per model across steps
    assert (logs.out + logs.err).count(f"(MLFLOW_RUN_ID={parent.run_id})") == len(plan.steps)
    nested = [r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) == parent.run_id]
    assert len(nested) == len(runs) - 1
    names = [r.info.run_name for r in nested]
    # the six models, the ensembles and the physics row, each once
    assert sorted(names) == sorted(
        [*ARCHITECTURES, "ensemble_hard", "ensemble_soft", "ensemble_selected", "physics_limit"]
    )
    assert parent.status == "FINISHED" and all(r.info.status == "FINISHED" for r in nested)
    assert parents[0].data.tags["kfp.final_state"] == "SUCCEEDED"  # the exit handler's task ended it
    # the gate compared the six models of this run, not whichever step it found first
    decision = json.loads((data / "08_reporting/registry_decision.json").read_text())
    assert decision["parent_run_id"] == parent.run_id
    assert set(ARCHITECTURES) <= set(decision["candidates"])
    assert all(decision["candidate_scores"][arch] is not None for arch in ARCHITECTURES)  # every score named

    check_mlflow_server(mlflow_server, client, parent.run_id, nested, decision)
    assert not (kedro_project / "mlflow.db").exists() and not (kedro_project / "mlartifacts").exists()

    check_kubeflow_ui(tmp_path / "kfp_outputs", data)


def check_mlflow_server(mlflow_server, client, parent_run_id, nested, decision):
    """Everything arrived at the server: metrics, artifacts (in its artifact store), the model version."""
    by_name = {r.info.run_name: r for r in nested}
    for arch in ARCHITECTURES:
        metrics = by_name[arch].data.metrics
        assert {"test.classification.macro_ap", "robustness.summary.worst_macro_ap"} <= set(metrics), arch
    bundles = list(mlflow_server["artifacts"].rglob("bundle.pt"))
    assert len(bundles) == len(ARCHITECTURES)
    assert {a.path for a in client.list_artifacts(parent_run_id)} >= {"comparison", "robustness", "registry"}
    champion = client.get_model_version_by_alias("alloy_mtl", "champion")
    assert champion.run_id == by_name[decision["arch"]].info.run_id
    assert "database is locked" not in mlflow_server["log"].read_text()


def check_kubeflow_ui(pipeline_root, data):
    """What the Kubeflow UI shows: each model step's metrics and confusion matrix, the reports' markdown."""
    [run_root] = pipeline_root.iterdir()
    for arch in ARCHITECTURES:
        written = json.loads((run_root / arch.replace("_", "-") / "executor_output.json").read_text())[
            "artifacts"
        ]
        metrics = json.loads((data / f"08_reporting/{arch}/metrics.json").read_text())["classification"]
        shown = written["metrics"]["artifacts"][0]["metadata"]
        assert shown["test_macro_ap"] == pytest.approx(metrics["macro_ap"]), arch
        matrix = written["confusion_matrix"]["artifacts"][0]["metadata"]["confusionMatrix"]
        assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == metrics["alloys"]
        assert [row["row"] for row in matrix["rows"]] == metrics["confusion_matrix"]
    assert (run_root / "comparison/report").read_text() == (data / "08_reporting/comparison.md").read_text()
    assert "# Promotion gate" in (run_root / "promotion/report").read_text()
    suite = json.loads((run_root / "robustness/executor_output.json").read_text())["artifacts"]["metrics"]
    summary = json.loads((data / "08_reporting/fnn/robustness.json").read_text())["summary"]
    assert suite["artifacts"][0]["metadata"]["fnn_worst_macro_ap"] == pytest.approx(summary["worst_macro_ap"])


@pytest.mark.slow
def test_a_failing_step_ends_the_parent_run_failed_through_the_exit_handler(
    kedro_project, tmp_path, monkeypatch
):
    from kfp import local
    from mlflow.tracking import MlflowClient

    from alloy_mtl.deploy.local import build_local_pipeline
    from alloy_mtl.deploy.plan import build_plan
    from alloy_mtl.deploy.project import load_project

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    plan = build_plan(load_project(kedro_project, "base"), "data_processing")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp_outputs"))
    with pytest.raises(RuntimeError, match="FAILURE|failed|FAILED"):
        # a lab folder without a path: the data step stops before its first node
        build_local_pipeline(plan, kedro_project)(data_source_kind="csv_folder")

    client = MlflowClient(uri)
    [parent] = client.search_runs([client.get_experiment_by_name("alloy_mtl").experiment_id])
    assert parent.info.status == "FAILED"  # set by the exit handler's task, which ran after the failure
    assert parent.data.tags["kfp.final_state"] == "FAILED" and parent.data.tags["kfp.run_id"]
