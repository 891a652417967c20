"""The torchrun entry point: its arguments, and one Kedro training node run on two gloo ranks (the
data-parallel training itself is tested in tests/mtl/test_ddp.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alloy_mtl.train import parse_args, runtime_params
from tests.subprocesses import run_child, torchrun


def test_runtime_params_nest_dotted_keys_and_read_values_as_yaml() -> None:
    params = runtime_params("training.epochs=3,training.device=cuda,training.amp=false,seed=7")
    assert params == {"training": {"epochs": 3, "device": "cuda", "amp": False}, "seed": 7}
    assert runtime_params(None) == {}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        runtime_params("training.epochs")


def test_arguments_name_an_architecture_or_a_pipeline() -> None:
    args = parse_args(["--arch", "resnet18", "--env", "paper", "--nodes", "resnet18.train"])
    assert (args.arch, args.pipeline, args.env, args.nodes) == ("resnet18", None, "paper", "resnet18.train")
    with pytest.raises(SystemExit):
        parse_args(["--arch", "resnet18", "--pipeline", "train_fnn"])


@pytest.mark.slow
def test_torchrun_trains_the_node_on_two_ranks_and_rank_zero_saves(kedro_project: Path) -> None:
    from alloy_mtl.data.store import XrayData, write_store
    from tests.mtl.ddp_worker import data

    images, metadata = data(40, 10)
    write_store(XrayData(images, metadata), kedro_project / "data/05_model_input/xray")
    params = "fnn.train_options.epochs=2,training.device=cpu"
    command = ["-m", "alloy_mtl.train", "--arch", "fnn", "--nodes", "fnn.train", "--params", params]
    run_child([*torchrun(2), *command], cwd=kedro_project)
    output = kedro_project / "data/07_model_output/fnn"
    summary = json.loads((output / "training_summary.json").read_text())
    assert (summary["world_size"], summary["epochs_trained"]) == (2, 2)
    assert (kedro_project / "data/06_models/fnn/checkpoints/last.pt").is_file()
