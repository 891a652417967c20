"""No run stays RUNNING: SIGTERM ends the runs KILLED, and runs of processes killed outright are swept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alloy_mtl.tracking.stale_runs import HOST_TAG, PID_TAG, end_stale_runs
from tests.subprocesses import child_env


def _gone_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_runs_of_a_process_that_is_gone_are_ended_killed_and_others_are_left(mlflow_backend):
    client, experiment = mlflow_backend["client"], mlflow_backend["experiment_id"]
    host = socket.gethostname()

    def parent(pid: int, on: str = host) -> str:
        return client.create_run(experiment, tags={HOST_TAG: on, PID_TAG: str(pid)}).info.run_id

    dead = parent(_gone_pid())
    nested = client.create_run(experiment, tags={MLFLOW_PARENT_RUN_ID: dead}).info.run_id
    alive = parent(os.getpid())
    elsewhere = parent(_gone_pid(), on="another-host")
    ended = end_stale_runs(client, experiment)
    assert ended == [dead, nested]
    assert [client.get_run(r).info.status for r in (dead, nested)] == ["KILLED", "KILLED"]
    assert [client.get_run(r).info.status for r in (alive, elsewhere)] == ["RUNNING", "RUNNING"]
    assert end_stale_runs(client, experiment) == []


SIGTERMED = """
import os, signal, sys, time
from mlflow.tracking import MlflowClient
from alloy_mtl.tracking.runs import RunTracker
client = MlflowClient(sys.argv[1])
tracker = RunTracker(client, client.create_experiment("sigterm"))
tracker.start_parent("train_all", {}, {})
tracker.child("fnn")
print(tracker.parent_run_id, tracker.children["fnn"], flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)
print("still alive", flush=True)
"""


def test_sigterm_ends_the_runs_killed_and_still_terminates_the_process(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", SIGTERMED, uri],
        cwd=tmp_path,
        env={**child_env(), "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr[-2000:]
    assert "still alive" not in done.stdout
    parent, child = done.stdout.split()[:2]
    client = MlflowClient(uri)
    assert [client.get_run(r).info.status for r in (parent, child)] == ["KILLED", "KILLED"]
