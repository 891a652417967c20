"""Shared fixtures: a throw-away copy of the Kedro project so pipeline tests never touch the repo's data/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session", autouse=True)
def isolated_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every kedro run of the tests tracks to one throw-away sqlite database, never a project's mlflow.db
    or a server named by the developer's own ``MLFLOW_TRACKING_URI``; a test may point it elsewhere."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture
def kedro_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's conf/ and pyproject.toml in ``tmp_path``, which becomes the working directory."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(REPO_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("credentials*"))
    (project / "conf" / "local").mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()  # Kedro requires it; the package itself is imported from the install
    monkeypatch.chdir(project)
    return project


@pytest.fixture
def run_pipeline() -> Callable[..., dict[str, Any]]:
    """Run a registered pipeline of a project directory with runtime parameter overrides."""

    def _run(
        project: Path,
        name: str,
        params: dict[str, Any] | None = None,
        env: str | None = None,
        runner: Any = None,
    ) -> dict:
        from kedro.framework.session import KedroSession
        from kedro.framework.startup import bootstrap_project

        bootstrap_project(project)
        with KedroSession.create(project_path=project, runtime_params=params or {}, env=env) as session:
            return session.run(pipeline_names=[name], runner=runner)

    return _run
