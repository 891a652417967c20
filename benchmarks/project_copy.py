"""A fresh copy of the project for benchmarks that run ``kedro run`` end to end: this checkout's ``conf/base``
and ``pyproject.toml`` (the installed package supplies the code), with its own ``data/`` and MLflow store; and
what benchmarks read back from a project's configuration."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kedro.config import OmegaConfigLoader

from alloy_mtl.config import parse_params
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.robustness import condition_kinds

ROOT = Path(__file__).resolve().parents[1]


def project_copy(where: Path) -> Path:
    """``where/project``: conf (without ``local`` and credentials), pyproject.toml and an empty ``src``."""
    project = where / "project"
    project.mkdir(parents=True)
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("credentials*", "local"))
    (project / "conf" / "local").mkdir()
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()
    return project


def kedro_env(project: Path) -> dict[str, str]:
    """The environment of a ``kedro run`` in ``project``: no telemetry, no display, its own MLflow store."""
    return dict(
        os.environ,
        KEDRO_DISABLE_TELEMETRY="true",
        MPLBACKEND="Agg",
        MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}",
    )


def suite_condition_kinds(project: Path) -> dict[str, str]:
    """Each robustness-suite condition's kind under ``project``'s own parameters (``conf/base`` and
    ``conf/local``)."""
    params = OmegaConfigLoader(str(project / "conf"), base_env="base", default_run_env="local")["parameters"]
    suite = parse_params(EvaluationParams, params.get("evaluation", {}), "evaluation").robustness
    return condition_kinds(params.get("generation"), suite)
