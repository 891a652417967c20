"""Shared fixtures of the Kubeflow tests: the real project read once, synthetic projects, a fake KFP API."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.pipeline import Node, Pipeline

from alloy_mtl.deploy.project import ProjectView
from tests.conftest import REPO_ROOT
from tests.deploy.fake_kfp import FakeKfp, serve
from tests.subprocesses import free_port, wait_until_answering

REFRESH = "kedro kubeflow compile --pipeline train_all -o pipelines/train_all.yaml"


@pytest.fixture(scope="session")
def repo_project() -> ProjectView:
    """The repository's own project in env ``base`` (loaded once: a Kedro session costs seconds)."""
    from alloy_mtl.deploy.project import load_project

    return load_project(REPO_ROOT, "base")


@pytest.fixture(scope="session")
def repo_kubeflow() -> dict[str, Any]:
    """conf/base/kubeflow.yml as committed."""
    return yaml.safe_load((REPO_ROOT / "conf/base/kubeflow.yml").read_text())


def _identity(*args: Any) -> Any:
    return args[0] if len(args) == 1 else args


def node(inputs: str | list[str] | None, outputs: str | list[str], name: str, **kwargs: Any) -> Node:
    """A node of a synthetic pipeline (the function is irrelevant to compiling)."""
    return Node(_identity, inputs, outputs, name=name, **kwargs)


MINIMAL_CONFIG: dict[str, Any] = {
    "image": "example.org/alloy-mtl:test",
    "final_step": {"pipeline": None},
    "secrets": [],
    "resources": {"__default__": {"cpu_request": "1", "memory_request": "1Gi"}},
    "parameters": {"epochs": {"kedro": "training.epochs", "type": "int"}},
}


@pytest.fixture
def synthetic() -> Callable[..., ProjectView]:
    """Build a ProjectView from pipelines, the catalog's persisted dataset names and a kubeflow config."""

    def _make(
        pipelines: dict[str, Pipeline],
        persisted: set[str] | None = None,
        kubeflow: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> ProjectView:
        persisted = persisted or set()
        return ProjectView(
            pipelines=pipelines,
            dataset_type=lambda name: "kedro_datasets.pickle.PickleDataset" if name in persisted else None,
            parameters=parameters if parameters is not None else {"training": {"epochs": 3, "seed": 1}},
            kubeflow=copy.deepcopy(MINIMAL_CONFIG) if kubeflow is None else kubeflow,
            env="base",
        )

    return _make


@pytest.fixture
def fake_kfp() -> Iterator[FakeKfp]:
    """A fake KFP v2 API on 127.0.0.1, shut down after the test."""
    fake = FakeKfp()
    server, thread = serve(fake)
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def compiled_train_all(repo_project: ProjectView, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train_all compiled from the repository's committed configuration."""
    from alloy_mtl.deploy.compiler import compile_plan
    from alloy_mtl.deploy.plan import build_plan

    return compile_plan(
        build_plan(repo_project, "train_all"), tmp_path_factory.mktemp("kfp") / "train_all.yaml"
    )


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A real ``mlflow server`` on loopback, as a cluster runs one for its pods: HTTP tracking and registry,
    artifacts served by it (``--serve-artifacts``), a sqlite backend behind it, two workers."""
    root = tmp_path / "mlflow_server"
    root.mkdir()
    port = free_port()
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "PYTHONPATH"}
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        (root / "artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    with log.open("w") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/health", server, log, timeout_s=120)
        yield {"uri": url, "artifacts": root / "artifacts", "log": log}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
