"""Environment for tests that start Python children (torchrun ranks, a benchmark script, a server)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
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


def torchrun(nproc: int) -> list[str]:
    """``torchrun --standalone --nproc_per_node=<nproc>``, the one next to this interpreter when there is one."""
    found = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert found, "torchrun not found"
    return [found, "--standalone", f"--nproc_per_node={nproc}"]


def run_child(command: Sequence[str], cwd: Path | None = None, timeout: float = 240) -> None:
    """Run ``command`` with :func:`child_env`; fail with the tail of its output unless it exits 0."""
    done = subprocess.run(
        list(command), cwd=cwd, env=child_env(), check=False, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answering(url: str, server: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail with the tail of the server's ``log`` if the server exits first
    or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None, f"{url}: the server exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"{url} did not answer within {timeout_s:g} s:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.5)
