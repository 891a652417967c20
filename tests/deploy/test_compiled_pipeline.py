"""train_all compiled from the committed configuration, read back with kfp's own loader.

The expectations come from the Kedro graph (``register_pipelines``) and kubeflow.yml, not from the
compiler: which nodes a task runs is read from its container arguments.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format
from kfp import components

from alloy_mtl.cli import cli
from alloy_mtl.mtl.params import TrainingParams
from alloy_mtl.pipeline_registry import register_pipelines
from alloy_mtl.pipelines.training import ARCHITECTURES
from tests.conftest import REPO_ROOT
from tests.deploy.conftest import REFRESH

INFRASTRUCTURE = {"createpvc", "deletepvc", "mlflow-start-run"}
EXIT = "exit-handler-1"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The refresh command itself, run through the project CLI into a temporary file."""
    output = tmp_path_factory.mktemp("kfp") / "train_all.yaml"
    result = CliRunner().invoke(
        cli,
        ["kubeflow", "compile", "--pipeline", "train_all", "-o", str(output)],
        obj=SimpleNamespace(project_path=REPO_ROOT),
    )
    assert result.exit_code == 0, result.output
    assert f"Compiled train_all (11 steps) to {output}" in result.output
    return output


@pytest.fixture(scope="module")
def spec(compiled: Path) -> dict[str, Any]:
    component = components.load_component_from_file(str(compiled))
    return {
        "pipeline": json_format.MessageToDict(component.pipeline_spec),
        "platform": json_format.MessageToDict(component.platform_spec),
    }


def _tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tasks inside the exit handler (every task but the exit task)."""
    return spec["pipeline"]["components"][f"comp-{EXIT}"]["dag"]["tasks"]


def _container(spec: dict[str, Any], task: str) -> dict[str, Any]:
    executor = spec["pipeline"]["components"][f"comp-{task}"]["executorLabel"]
    return spec["pipeline"]["deploymentSpec"]["executors"][executor]["container"]


def _k8s(spec: dict[str, Any], task: str) -> dict[str, Any]:
    executor = spec["pipeline"]["components"][f"comp-{task}"]["executorLabel"]
    return spec["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][executor]


def _step_nodes(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Task -> the Kedro nodes it runs, read from ``--nodes`` in its container arguments."""
    steps = {}
    for task in _tasks(spec):
        if task in INFRASTRUCTURE:
            continue
        args = _container(spec, task)["args"]
        steps[task] = args[args.index("--nodes") + 1].split(",")
    return steps


def test_committed_yaml_is_what_a_fresh_compile_writes(compiled: Path):
    committed = REPO_ROOT / "pipelines" / "train_all.yaml"
    assert committed.exists(), f"pipelines/train_all.yaml is missing: run `{REFRESH}`"
    assert committed.read_bytes() == compiled.read_bytes(), (
        f"pipelines/train_all.yaml is stale (Kedro pipelines or conf changed): run `{REFRESH}` and commit it"
    )


def test_one_task_per_group_running_every_node_once(spec):
    steps = _step_nodes(spec)
    nodes = [name for names in steps.values() for name in names]
    assert sorted(nodes) == sorted(node.name for node in register_pipelines()["train_all"].nodes)
    assert set(_tasks(spec)) == set(steps) | INFRASTRUCTURE
    # default grouping: data processing and comparison one step each, one per architecture namespace
    assert steps["data"][0] == "acquire_dataset"
    assert steps["resnet18"] == [
        "resnet18.train",
        "resnet18.predict_evaluation_set",
        "resnet18.predict_ood_set",
        "resnet18.predict_validation",
        "resnet18.evaluate",
    ]
    # the robustness suite keeps its in-memory images inside one step (its nodes are tagged robustness)
    assert steps["robustness"][0] == "simulate_robustness_conditions"
    assert "fnn.predict_robustness" in steps["robustness"] and steps["robustness"][-1] == "report_robustness"
    # the physics unknown score, fitted then measured on the evaluation's sets: its own step, beside the data
    assert steps["unknown-materials"] == ["fit_unknown_materials", "evaluate_unknown_materials"]
    assert "answer_with_physics" in steps["comparison"]


def test_dependent_tasks_equal_the_kedro_graph(spec):
    steps = _step_nodes(spec)
    task_of = {name: task for task, names in steps.items() for name in names}
    expected: dict[str, set[str]] = {task: set() for task in steps}
    for child, parents in register_pipelines()["train_all"].node_dependencies.items():
        expected[task_of[child.name]] |= {task_of[p.name] for p in parents} - {task_of[child.name]}
    for task in steps:
        depends = set(_tasks(spec)[task].get("dependentTasks", []))
        assert depends - {"createpvc", "mlflow-start-run"} == expected[task], task
        assert {"createpvc", "mlflow-start-run"} <= depends  # the volume and the MLflow run come first
    leaves = {task for task in steps if not any(task in deps for deps in expected.values())}
    assert set(_tasks(spec)["deletepvc"]["dependentTasks"]) == leaves | {"createpvc"}


def test_six_training_tasks_request_a_gpu_after_the_data_and_before_the_comparison(spec):
    pipelines = register_pipelines()
    training_nodes = {node.name for node in pipelines["training"].nodes}
    steps = _step_nodes(spec)
    training = {task for task, names in steps.items() if training_nodes & set(names)}
    assert len(training) == 6
    for task in _tasks(spec):
        accelerator = _container(spec, task).get("resources", {}).get("accelerator")
        if task in training:
            assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1"
            assert "data" in _tasks(spec)[task]["dependentTasks"]
            assert _k8s(spec, task)["tolerations"][0]["key"] == "nvidia.com/gpu"
        else:
            assert accelerator is None, f"{task} must not request a GPU"
    assert training <= set(_tasks(spec)["comparison"]["dependentTasks"])


def test_retries_caching_volume_shm_and_secrets_on_every_step(spec, repo_kubeflow):
    resources = repo_kubeflow["resources"]
    for task, config in _tasks(spec).items():
        assert config["cachingOptions"].get("enableCache", False) is False, task  # run-scoped volume
        if task in INFRASTRUCTURE:
            continue
        group = config["taskInfo"]["name"]  # the display name is the Kedro group
        wanted = resources.get(group, resources["__default__"])["retry"]
        assert config["retryPolicy"]["maxRetryCount"] == wanted["count"], task
        assert config["retryPolicy"]["backoffDuration"] == wanted["backoff"], task
        k8s = _k8s(spec, task)
        (mount,) = k8s["pvcMount"]
        assert mount["mountPath"] == "/home/alloy/app/data"
        assert mount["pvcNameParameter"]["taskOutputParameter"] == {
            "producerTask": "createpvc",
            "outputParameterKey": "name",
        }
        (shm,) = k8s["emptyDirMounts"]
        assert (shm["mountPath"], shm["medium"]) == ("/dev/shm", "Memory")
        assert k8s["secretAsEnv"][0]["secretName"] == "mlflow-credentials"
        assert int(k8s["activeDeadlineSeconds"]) > 0


def test_typed_parameters_with_the_kedro_defaults_reach_the_steps_that_read_them(spec):
    defaults = TrainingParams.model_fields  # the YAML holds only what differs from the typed defaults
    training = yaml.safe_load((REPO_ROOT / "conf/base/parameters_training.yml").read_text())["training"]
    inputs = spec["pipeline"]["root"]["inputDefinitions"]["parameters"]
    assert inputs["epochs"] == {
        "parameterType": "NUMBER_INTEGER",
        "defaultValue": training.get("epochs", defaults["epochs"].default),
        "isOptional": True,
    }
    assert inputs["seed"]["defaultValue"] == defaults["seed"].default
    assert inputs["data_source_path"]["parameterType"] == "STRING"
    args = _container(spec, "resnet18")["args"]
    assert "training.epochs:int={{$.inputs.parameters['epochs']}}" in args
    # the pipeline parameter reaches the task through the exit handler's sub-DAG
    handler = spec["pipeline"]["root"]["dag"]["tasks"][EXIT]["inputs"]["parameters"]
    assert handler["pipelinechannel--epochs"] == {"componentInputParameter": "epochs"}
    assert _tasks(spec)["resnet18"]["inputs"]["parameters"]["epochs"] == {
        "componentInputParameter": "pipelinechannel--epochs"
    }
    # the evaluation-set prediction reads the data source (it simulates the set only for generated data)
    assert "data_source.kind:str={{$.inputs.parameters['data_source_kind']}}" in args
    # so does the gate: it regenerates the suite's images for generated data to score the champion on them
    assert (
        "data_source.kind:str={{$.inputs.parameters['data_source_kind']}}"
        in _container(spec, "promotion")["args"]
    )
    data_args = _container(spec, "data")["args"]
    assert "data_source.path:str={{$.inputs.parameters['data_source_path']}}" in data_args


def test_every_step_joins_the_mlflow_run_the_first_task_opens(spec):
    for task in _step_nodes(spec):
        run_id = _tasks(spec)[task]["inputs"]["parameters"]["mlflow_run_id"]
        assert run_id["taskOutputParameter"] == {
            "producerTask": "mlflow-start-run",
            "outputParameterKey": "run_id",
        }
        args = _container(spec, task)["args"]
        assert args[:2] == ["--env", "base"] and args[args.index("--pipeline") + 1] == "train_all"
        assert _container(spec, task)["command"] == ["python", "-m", "alloy_mtl.deploy.step"]
    assert _container(spec, "mlflow-start-run")["command"] == ["python", "-m", "alloy_mtl.deploy.mlflow_run"]


def test_an_exit_handler_ends_the_mlflow_parent_run_however_the_run_ends(spec):
    root = spec["pipeline"]["root"]["dag"]["tasks"]
    assert set(root) == {EXIT, "mlflow-end-run"}  # every other task runs inside the exit handler
    end = root["mlflow-end-run"]
    assert end["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert end["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": EXIT}}
    container = _container(spec, "mlflow-end-run")
    assert container["command"] == ["python", "-m", "alloy_mtl.deploy.mlflow_run"]
    # it may not read the first task's output: it finds the parent run by the Kubeflow run id both tag
    assert container["args"] == [
        "--end",
        "--kfp-run-id",
        "{{$.pipeline_job_uuid}}",
        "--final-status",
        "{{$.inputs.parameters['status']}}",
    ]
    assert "kfp.run_id={{$.pipeline_job_uuid}}" in _container(spec, "mlflow-start-run")["args"]
    # the same tracking server and credentials as the steps
    assert container["env"] == _container(spec, "data")["env"]
    assert _k8s(spec, "mlflow-end-run")["secretAsEnv"] == _k8s(spec, "data")["secretAsEnv"]


def test_steps_show_their_results_in_the_kubeflow_ui(spec):
    components = spec["pipeline"]["components"]

    def outputs(task: str) -> dict[str, str]:
        artifacts = components[f"comp-{task}"].get("outputDefinitions", {}).get("artifacts", {})
        return {name: a["artifactType"]["schemaTitle"] for name, a in artifacts.items()}

    for arch in ARCHITECTURES:
        task = arch.replace("_", "-")
        assert outputs(task) == {
            "metrics": "system.Metrics",
            "confusion_matrix": "system.ClassificationMetrics",
        }
        args = _container(spec, task)["args"]
        # the file the catalog names for the model's metrics, relative to the project in the image
        assert args[args.index("--report-metrics") + 1] == f"data/08_reporting/{arch}/metrics.json"
        assert args[args.index("--kfp-output-file") + 1] == "{{$.outputs.output_file}}"
        assert ["--kfp-artifact", "metrics", "{{$.outputs.artifacts['metrics'].path}}"] == args[
            args.index("--kfp-artifact") : args.index("--kfp-artifact") + 3
        ]
    reports = {
        "comparison": "data/08_reporting/comparison.md",
        "robustness": "data/08_reporting/robustness/robustness.md",
        "promotion": "data/08_reporting/registry_decision.md",
    }
    for task, report in reports.items():
        suite = {"metrics": "system.Metrics"} if task == "robustness" else {}  # every model's suite summary
        assert outputs(task) == {"report": "system.Markdown", **suite}
        args = _container(spec, task)["args"]
        assert args[args.index("--report-markdown") + 1] == report
    args = _container(spec, "robustness")["args"]
    suites = [args[i + 1 : i + 3] for i, a in enumerate(args) if a == "--report-suite"]
    assert ["fnn", "data/08_reporting/fnn/robustness.json"] in suites
    assert {model for model, _ in suites} >= {*ARCHITECTURES, "physics_limit", "ensemble_selected"}
    assert outputs("data") == {} and "--kfp-output-file" not in _container(spec, "data")["args"]
