"""Read what the compiler needs from a Kedro project: its pipelines, catalog, parameters and kubeflow.yml."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.pipeline import Pipeline

from alloy_mtl.parameters import with_defaults
from alloy_mtl.tracking.config import parse_settings

logger = logging.getLogger(__name__)

DEFAULT_ENV = "base"
KUBEFLOW_PATTERNS = ["kubeflow*", "kubeflow*/**", "**/kubeflow*"]


@dataclass(frozen=True)
class ProjectView:
    """The parts of a Kedro project that compiling a pipeline reads.

    ``dataset_type`` gives a dataset's fully qualified class as the catalog resolves it (factories
    included), or ``None`` when the catalog does not know it (Kedro then uses a ``MemoryDataset``).
    """

    pipelines: Mapping[str, Pipeline]
    dataset_type: Callable[[str], str | None]
    parameters: Mapping[str, Any]
    kubeflow: Mapping[str, Any]
    env: str
    dataset_filepath: Callable[[str], str | None] = lambda name: None
    """The file a dataset is saved to, as the catalog resolves it (None: not a file dataset, or unknown)."""


def _filepath(catalog: Any, name: str, project_path: Path) -> str | None:
    """``filepath`` of a catalog dataset (factories resolved), relative to the project where it lies inside it
    (Kedro makes catalog paths absolute; a compiled pipeline runs the project elsewhere); None where it has
    none."""
    try:
        dataset = catalog.get(name)
    except Exception:  # noqa: BLE001 (a name the catalog cannot resolve simply has no file)
        return None
    described = dataset._describe() if dataset is not None else {}  # noqa: SLF001 (kedro-datasets' own view)
    path = described.get("filepath") if isinstance(described, dict) else None
    if not path:
        return None
    try:
        return Path(path).relative_to(project_path.resolve()).as_posix()
    except ValueError:
        return str(path)


def _with_mlflow_experiment(kubeflow: dict[str, Any], context: Any) -> dict[str, Any]:
    """``kubeflow`` with ``mlflow.experiment`` filled from ``mlflow.yml`` where it is null or absent (one
    experiment name, in one place)."""
    section = dict(kubeflow.get("mlflow") or {})
    if section.get("experiment"):
        return kubeflow
    try:
        conf = context.config_loader["mlflow"]
    except (KeyError, MissingConfigException):
        conf = {}
    section["experiment"] = parse_settings(conf).experiment
    return {**kubeflow, "mlflow": section}


def load_project(project_path: Path, env: str = DEFAULT_ENV) -> ProjectView:
    """Bootstrap the project at ``project_path`` and read it in configuration environment ``env``.

    ``env`` defaults to ``base`` so that a compile reads only committed configuration: the same files give
    the same YAML on every clone, whatever ``conf/local`` holds.
    """
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env) as session:
        context = session.load_context()
        context.config_loader.config_patterns.setdefault("kubeflow", KUBEFLOW_PATTERNS)
        try:
            kubeflow = context.config_loader["kubeflow"]
        except MissingConfigException:
            kubeflow = {}
        kubeflow = _with_mlflow_experiment(dict(kubeflow), context)
        catalog = context.catalog
        parameters = with_defaults(context.params)
    return ProjectView(
        pipelines={name: pipelines[name] for name in sorted(pipelines)},
        dataset_type=catalog.get_type,
        parameters=parameters,
        kubeflow=kubeflow,
        env=env,
        dataset_filepath=lambda name: _filepath(catalog, name, project_path),
    )
