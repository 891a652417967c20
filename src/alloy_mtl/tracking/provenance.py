"""Tags that say where a run came from: git commit, Kedro env and pipeline, library versions."""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

VERSIONED = ("kedro", "torch", "mlflow", "timm", "alloy_mtl")


def git_commit(project_path: str | Path) -> tuple[str, bool | None]:
    """``(commit sha, has uncommitted changes)`` of the project, or ``("unknown", None)`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_path,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return sha, bool(status.strip())


def provenance_tags(
    project_path: str | Path, env: str | None, pipeline: str, session_id: str | None
) -> dict[str, str]:
    """Tags of the parent run (nested runs inherit them)."""
    sha, dirty = git_commit(project_path)
    tags = {
        "mlflow.source.git.commit": sha,
        "git.commit": sha,
        "git.dirty": "unknown" if dirty is None else str(dirty).lower(),
        "mlflow.source.name": f"kedro run --pipeline {pipeline}",
        "mlflow.source.type": "PROJECT",
        "kedro.env": env or "local",
        "kedro.session_id": session_id or "",
        "alloy_mtl.pipeline": pipeline,
        "python.version": platform.python_version(),
    }
    for package in VERSIONED:
        try:
            tags[f"{package}.version"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            tags[f"{package}.version"] = "not installed"
    return tags
