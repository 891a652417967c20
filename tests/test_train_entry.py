"""The torchrun entry point's arguments (its data-parallel training is tested in tests/mtl/test_ddp.py)."""

from __future__ import annotations

import pytest

from alloy_mtl.train import parse_args, runtime_params


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
