"""The step entry point (kedro run --nodes ...) and the MLflow step that opens the parent run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alloy_mtl.deploy import mlflow_run, step


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("training.epochs:int=5", ("training.epochs", "5")),
        (
            "training.epochs:int=5.0",
            ("training.epochs", "5"),
        ),  # how KFP renders an integer it stored as a number
        ("training.lr:float=1", ("training.lr", "1.0")),
        ("flag:bool=True", ("flag", "true")),
        ("data_source.path:str=/lab/run 1", ("data_source.path", "/lab/run 1")),
        ("data_source.path:str=42", ("data_source.path", "'42'")),  # stays a string for Kedro's YAML parser
        ("data_source.path:str=", ("data_source.path", None)),  # empty: keep the configured value
    ],
)
def test_typed_params_become_what_kedro_params_reads(argument, expected):
    assert step.parse_param(argument) == expected


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("training.epochs:int=2.5", "--param 'training.epochs': '2.5' is not a valid int"),
        ("path:str=a,b", "--param 'path': kedro run --params cannot carry a comma in 'a,b'"),
        ("no_type=3", "--param 'no_type=3' is not KEY:TYPE=VALUE"),
    ],
)
def test_bad_params_are_refused_naming_them(argument, message):
    with pytest.raises(step.StepArgumentError) as error:
        step.parse_param(argument)
    assert str(error.value) == message


def test_the_step_runs_kedro_with_the_run_id_in_its_environment(monkeypatch, tmp_path):
    calls = []

    def fake_run(command, cwd, env, check):
        calls.append((command, cwd, env.get("MLFLOW_RUN_ID")))
        return subprocess.CompletedProcess(command, 3)

    monkeypatch.setattr(step.subprocess, "run", fake_run)
    status = step.main(
        [
            "--env", "base", "--pipeline", "train_all", "--nodes", "a.train,a.evaluate",
            "--param", "training.epochs:int=2", "--param", "data_source.path:str=",
            "--mlflow-run-id", "abc123", "--project-dir", str(tmp_path),
        ]
    )  # fmt: skip
    assert status == 3  # kedro's exit status is the step's
    command, cwd, run_id = calls[0]
    assert command == [
        sys.executable, "-m", "kedro", "run", "--pipeline", "train_all", "--env", "base",
        "--nodes", "a.train,a.evaluate", "--params", "training.epochs=2",
    ]  # fmt: skip
    assert (cwd, run_id) == (tmp_path, "abc123")
    step.main(["--pipeline", "p", "--mlflow-run-id", ""])
    assert calls[1][2] is None  # no MLflow run: nothing to join


def test_the_mlflow_step_writes_an_empty_id_without_a_tracking_uri(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    output = tmp_path / "outputs" / "run_id"
    assert mlflow_run.main(["--output", str(output), "--run-name", "kfp-run"]) == 0
    assert output.read_text() == ""


def test_the_mlflow_step_writes_the_id_of_the_run_it_opened(monkeypatch, tmp_path: Path):
    opened = {}

    class FakeRun:
        info = type("Info", (), {"run_id": "0123abcd"})

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.invalid")
    monkeypatch.setattr(mlflow, "set_experiment", lambda name: opened.update(experiment=name))
    monkeypatch.setattr(mlflow, "start_run", lambda **kwargs: opened.update(kwargs) or FakeRun())
    output = tmp_path / "run_id"
    mlflow_run.main(
        ["--output", str(output), "--run-name", "nightly", "--experiment", "alloy", "--tag", "kfp.run_id=r1"]
    )
    assert output.read_text() == "0123abcd"
    assert opened == {"experiment": "alloy", "run_name": "nightly", "tags": {"kfp.run_id": "r1"}}


def test_a_multi_gpu_step_runs_its_nodes_under_torchrun(monkeypatch, tmp_path):
    calls = []

    def fake_run(command, cwd, env, check):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(step.subprocess, "run", fake_run)
    arguments = ["--env", "paper", "--pipeline", "train_all", "--nodes", "a.train,a.evaluate"]
    step.main([*arguments, "--param", "training.epochs:int=2", "--nproc-per-node", "4"])
    assert calls[0] == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
        "-m", "alloy_mtl.train", "--pipeline", "train_all", "--env", "paper",
        "--nodes", "a.train,a.evaluate", "--params", "training.epochs=2",
    ]  # fmt: skip
    step.main([*arguments, "--nproc-per-node", "1"])
    assert calls[1][1:4] == ["-m", "kedro", "run"]  # one GPU: plain kedro run
