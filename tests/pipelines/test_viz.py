"""A newcomer can see the graph: `kedro viz build` renders every registered pipeline to a static site."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_kedro_viz_build_writes_the_static_site_of_every_pipeline(kedro_project):
    pytest.importorskip("kedro_viz")
    # the installed package, not this process's sys.path: a test that loaded a logged MLflow model put its
    # partial copy of alloy_mtl (only the modules the pyfunc needs) on sys.path
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    kedro = shutil.which("kedro", path=os.path.dirname(sys.executable)) or "kedro"
    result = subprocess.run(
        [kedro, "viz", "build"],
        cwd=kedro_project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    site = kedro_project / "build"
    assert (site / "index.html").is_file(), (
        sorted(p.name for p in kedro_project.iterdir()),
        result.stdout[-2000:],
    )
    registered = (site / "api" / "pipelines").iterdir()
    names = {path.name for path in registered}
    assert {"__default__", "train_all", "data_processing", "train_resnet18", "train_fnn"} <= names
