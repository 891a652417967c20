"""Environment for tests that start Python children (torchrun ranks, a benchmark script)."""

from __future__ import annotations

import os
from pathlib import Path

import alloy_mtl


def child_env() -> dict[str, str]:
    """``os.environ`` with ``PYTHONPATH`` = the folder this test session imported ``alloy_mtl`` from, and one
    thread per process.

    Not the test process's whole ``sys.path``: a test that loads a logged MLflow model puts the model's
    partial copy of ``alloy_mtl`` on it, which a child would then import.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(Path(alloy_mtl.__file__).resolve().parents[1])
    env["OMP_NUM_THREADS"] = "1"
    return env
