"""tune_<arch> compiles like any other pipeline: one step running the architecture's PBT node."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner
from google.protobuf import json_format
from kfp import components

from alloy_mtl.cli import cli
from tests.conftest import REPO_ROOT


def test_tune_resnet18_compiles_to_a_valid_kfp_pipeline(tmp_path: Path):
    output = tmp_path / "tune_resnet18.yaml"
    result = CliRunner().invoke(
        cli,
        ["kubeflow", "compile", "--pipeline", "tune_resnet18", "-o", str(output)],
        obj=SimpleNamespace(project_path=REPO_ROOT),
    )
    assert result.exit_code == 0, result.output
    spec = json_format.MessageToDict(components.load_component_from_file(str(output)).pipeline_spec)
    executors = spec["deploymentSpec"]["executors"]
    nodes = [
        args[args.index("--nodes") + 1]
        for args in (executor["container"].get("args", []) for executor in executors.values())
        if "--nodes" in args
    ]
    assert nodes == ["resnet18.tune"]
    assert spec["pipelineInfo"]["name"] == "alloy-mtl-tune-resnet18"
