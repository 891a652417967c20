"""The same plan compiles to the same bytes (the committed YAML is compared byte for byte)."""

from __future__ import annotations

import pytest
from kedro.pipeline import Pipeline

from alloy_mtl.deploy.compiler import compile_plan
from alloy_mtl.deploy.plan import build_plan
from tests.deploy.conftest import node


@pytest.mark.filterwarnings("ignore:One or more dataset names contain")
def test_compiling_twice_gives_identical_bytes(synthetic, tmp_path):
    pipeline = Pipeline(
        [node("params:a", "raw", "acquire")]
        + [node(["raw", "params:training"], f"{arch}.model", "train", namespace=arch) for arch in "abcdef"]
    )
    project = synthetic({"main": pipeline}, persisted={"raw"})
    first = compile_plan(build_plan(project, "main"), tmp_path / "first.yaml").read_bytes()
    second = compile_plan(build_plan(project, "main"), tmp_path / "second.yaml").read_bytes()
    assert first == second
    # createpvc, mlflow-start-run, 7 steps, deletepvc inside the exit handler, the exit handler and its exit task
    assert first.count(b"taskInfo:") == 12
