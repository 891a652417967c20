"""Caching that cannot lie: the data's content fingerprint enters a cached step's KFP cache key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from alloy_mtl.deploy import fingerprint
from alloy_mtl.deploy.compiler import compile_plan
from alloy_mtl.deploy.plan import build_plan


def test_changed_data_at_the_same_path_is_another_fingerprint(tmp_path: Path):
    lab = tmp_path / "lab"
    (lab / "images").mkdir(parents=True)
    (lab / "metadata.csv").write_text("image_id,alloy\na,1050\n")
    (lab / "images/a.png").write_bytes(b"\x89PNG one")
    first = fingerprint.data_fingerprint("csv_folder", "lab", tmp_path)
    assert first.startswith("sha256:") and first == fingerprint.data_fingerprint("csv_folder", str(lab))
    (lab / "images/a.png").write_bytes(b"\x89PNG two")  # same path, same size, other pixels
    second = fingerprint.data_fingerprint("csv_folder", str(lab))
    assert second != first
    (lab / "images/a.png").rename(lab / "images/b.png")  # same bytes under another name
    assert fingerprint.data_fingerprint("csv_folder", str(lab)) != second
    assert fingerprint.data_fingerprint("generated", "") == "generated"  # its parameters are the key
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fingerprint.data_fingerprint("csv_folder", str(tmp_path / "missing"))


def test_the_task_takes_the_pipeline_parameter_or_else_the_configured_source(tmp_path: Path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab/x.tif").write_bytes(b"x")
    output = tmp_path / "out/fingerprint"
    arguments = ["--kind", "", "--path", "", "--configured-kind", "csv_folder", "--configured-path", "lab"]
    fingerprint.main([*arguments, "--project-dir", str(tmp_path), "--output", str(output)])
    assert output.read_text() == fingerprint.data_fingerprint("csv_folder", str(tmp_path / "lab"))
    fingerprint.main(["--kind", "generated", "--configured-kind", "csv_folder", "--output", str(output)])
    assert output.read_text() == "generated"


def test_on_a_lasting_volume_the_cached_data_step_reads_the_fingerprint(repo_project, tmp_path: Path):
    kubeflow = {**repo_project.kubeflow, "storage": {"kind": "existing_pvc", "claim_name": "alloy-data"}}
    plan = build_plan(dataclasses.replace(repo_project, kubeflow=kubeflow), "train_all")
    data = plan.step("data")
    assert data.caching and data.fingerprinted
    assert not any(step.fingerprinted for step in plan.steps if step.group != "data")  # none reads the source
    spec = next(yaml.safe_load_all(compile_plan(plan, tmp_path / "train_all.yaml").read_text()))
    tasks = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert tasks["data-fingerprint"]["cachingOptions"] == {}  # never cached: it must look every time
    assert tasks["data"]["cachingOptions"] == {"enableCache": True}
    assert tasks["data"]["inputs"]["parameters"]["data_fingerprint"] == {
        "taskOutputParameter": {"producerTask": "data-fingerprint", "outputParameterKey": "fingerprint"}
    }
    container = spec["deploymentSpec"]["executors"]["exec-data-fingerprint"]["container"]
    assert container["command"] == ["python", "-m", "alloy_mtl.deploy.fingerprint"]
    args = container["args"]
    assert args[args.index("--path") + 1] == "{{$.inputs.parameters['data_source_path']}}"
    assert args[args.index("--configured-kind") + 1] == "generated"
    data_args = spec["deploymentSpec"]["executors"]["exec-data"]["container"]["args"]
    assert "--data-fingerprint" in data_args
