"""No MLflow run of this project stays RUNNING after its process is gone.

A ``kedro run`` that ends normally, by an error, Ctrl-C or ``SystemExit`` ends its runs (the hooks and an
``atexit`` handler). Two ways remain: SIGTERM (what Kubeflow and Kubernetes send on timeout or pod deletion),
whose default action ends the process without ``atexit``: :func:`end_runs_on_sigterm` ends the runs KILLED and
then lets the signal terminate the process as before; and SIGKILL (``kill -9``, the OOM killer), which nothing
in the process can catch: every parent run records its host and process id (:data:`HOST_TAG`,
:data:`PID_TAG`), and the next run on the same host ends as KILLED the RUNNING runs whose process is gone
(:func:`end_stale_runs`). A run from another host (a deleted pod) cannot be checked from here and is left.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

__all__ = ["HOST_TAG", "PID_TAG", "end_runs_on_sigterm", "end_stale_runs", "process_tags"]

logger = logging.getLogger(__name__)

HOST_TAG = "alloy_mtl.host"
PID_TAG = "alloy_mtl.pid"


def process_tags() -> dict[str, str]:
    """This process's host name and id, as parent-run tags."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def end_stale_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """End as KILLED the RUNNING parent runs of ``experiment_id`` started on this host by a process that no
    longer exists, and their RUNNING nested runs; returns the ended run ids (parents first)."""
    host = socket.gethostname()
    running = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    )
    ended: list[str] = []
    for run in running:
        pid = run.data.tags.get(PID_TAG, "")
        if not pid.isdigit() or _alive(int(pid)):
            continue
        children = client.search_runs(
            [experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{MLFLOW_PARENT_RUN_ID}` = '{run.info.run_id}'",
        )
        for stale in (run, *children):
            client.set_terminated(stale.info.run_id, status=RunStatus.to_string(RunStatus.KILLED))
            ended.append(stale.info.run_id)
        logger.warning(
            "ended MLflow run %s (%s) and %d nested run(s) as KILLED: its process %s on %s is gone",
            run.info.run_id,
            run.info.run_name,
            len(children),
            pid,
            host,
        )
    return ended


def end_runs_on_sigterm(end_runs: Callable[[], None]) -> Callable[[], None]:
    """On SIGTERM, call ``end_runs`` and then terminate as the previous handler would have (the default: die
    by the signal, exit status 143). Returns the function that puts the previous handler back (the runs
    ended). Only the main thread can install a handler; elsewhere nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: object) -> None:
        try:
            end_runs()
        finally:
            signal.signal(signal.SIGTERM, previous)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is handler
        ):
            signal.signal(signal.SIGTERM, previous)

    return restore
