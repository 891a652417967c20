"""The MLflow runs of one ``kedro run``: a parent run and one nested run per model (architecture, ensemble,
physics-limit row), all written through an explicit ``MlflowClient`` and run ids.

Explicit run ids instead of MLflow's fluent "active run" because the fluent run is thread-local (a node run
by Kedro's ThreadRunner would log to a new stray run) and because several nested runs are open at once
(an architecture's run stays open from its training node to its evaluation node).

Only the process (and distributed rank 0) that created the tracker writes: sqlite allows one writer, so a
DataLoader worker or a DDP rank > 0 that inherits the tracker never logs.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from alloy_mtl.tracking.params import flatten_params
from alloy_mtl.tracking.stale_runs import end_runs_on_sigterm, process_tags

logger = logging.getLogger(__name__)

BATCH = 100
"""MLflow accepts at most 100 params (and 1000 metrics) per ``log_batch`` request."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")

_active: RunTracker | None = None
_active_lock = threading.Lock()


def distributed_rank() -> int:
    """This process's rank in a torch.distributed job (``RANK``; 0 when not distributed)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return int(os.environ.get("RANK", "0") or 0)


def metric_name(name: str) -> str:
    """``name`` with the characters MLflow refuses in metric keys replaced by ``_``."""
    return _UNSAFE.sub("_", str(name))


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) or restored when deleted."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


_PARAMS_LOCK = threading.Lock()


class RunTracker:
    """Owner of the parent run and its nested runs (keys: ``resnet18``, ``ensemble_soft``, ...).

    Every write method is a no-op outside the owning process/rank (see :meth:`is_owner`).
    """

    def __init__(self, client: MlflowClient, experiment_id: str) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id: str | None = None
        self.children: dict[str, str] = {}
        self.parent_tags: dict[str, str] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._restore_sigterm: Callable[[], None] = lambda: None
        self.joined = False
        self.instrument: dict[str, Any] | None = None
        """The instrument the run's data were simulated with (see ``calibrated_generation.simulated_instrument``),
        recorded in every model it logs; None when the pipeline simulates nothing."""

    # ---- ownership ------------------------------------------------------------------------------------
    def is_owner(self) -> bool:
        """True only in the process that created the tracker, and only on distributed rank 0."""
        return os.getpid() == self._pid and distributed_rank() == 0

    # ---- runs -----------------------------------------------------------------------------------------
    def start_parent(self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
        """Create the parent run with ``tags`` and ``params`` (flattened to dotted keys)."""
        if self.parent_run_id is not None:
            raise RuntimeError(f"parent run {self.parent_run_id} is already started")
        self.parent_tags = {k: str(v) for k, v in tags.items()}
        parent_tags = {**self.parent_tags, **process_tags()}  # nested runs need not say whose process
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=parent_tags)
        self.parent_run_id = run.info.run_id
        atexit.register(self._kill_if_open)  # Ctrl-C or SystemExit skip Kedro's error hooks
        self._restore_sigterm = end_runs_on_sigterm(self._kill_if_open)  # SIGTERM (Kubeflow) skips atexit
        self.log_params(self.parent_run_id, params)
        logger.info(
            "MLflow parent run %s (%s) in experiment %s", run_name, self.parent_run_id, self.experiment_id
        )
        return self.parent_run_id

    def join_parent(self, run_id: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
        """Join the parent run another process opened (a Kubeflow run's first step: ``MLFLOW_RUN_ID``).

        The run is set RUNNING again (the previous step ended it), gets ``tags``, and ``params`` only if it has
        none yet (MLflow refuses a param logged twice with another value); nested runs of a model that an
        earlier step created are reused, so one model keeps one nested run across steps. :meth:`end_all` ends
        the parent as this step ends (FINISHED, FAILED or KILLED); the next step reopens it.
        """
        if self.parent_run_id is not None:
            raise RuntimeError(f"parent run {self.parent_run_id} is already started")
        run = self.client.get_run(run_id)
        self.parent_run_id, self.joined = run_id, True
        self.parent_tags = {k: str(v) for k, v in tags.items()}
        self._reopen(run_id)
        self.set_tags(run_id, {**self.parent_tags, **process_tags()})
        if not run.data.params:
            self.log_params(run_id, params)
        atexit.register(self._kill_if_open)
        self._restore_sigterm = end_runs_on_sigterm(self._kill_if_open)
        logger.info(
            "MLflow: joined parent run %s (MLFLOW_RUN_ID) in experiment %s", run_id, self.experiment_id
        )
        return run_id

    def _reopen(self, run_id: str) -> None:
        """Set a joined run RUNNING again, unless an earlier step ended it FAILED or KILLED (that verdict stands)."""
        if self.client.get_run(run_id).info.status not in {"FAILED", "KILLED"}:
            self.client.update_run(run_id, status="RUNNING")

    def _existing_child(self, key: str) -> str | None:
        """The nested run of ``key`` an earlier step of a joined parent created (None if none)."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}' and tags.`alloy_mtl.model_key` = '{key}'"
            ),
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def child(self, key: str, tags: Mapping[str, str] | None = None) -> str | None:
        """The nested run of ``key``, created on first use with the parent's tags (reused from an earlier step
        of a joined parent); None when not the owner."""
        if not self.is_owner() or self.parent_run_id is None:
            return None
        with self._lock:
            if key not in self.children and self.joined and (existing := self._existing_child(key)):
                self._reopen(existing)
                self.children[key] = existing
            if key not in self.children:
                run_tags = {
                    **self.parent_tags,
                    **{k: str(v) for k, v in (tags or {}).items()},
                    MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                    MLFLOW_RUN_NAME: key,
                    "alloy_mtl.model_key": key,
                }
                run = self.client.create_run(self.experiment_id, run_name=key, tags=run_tags)
                self.children[key] = run.info.run_id
                logger.info("MLflow nested run %s (%s)", key, run.info.run_id)
            return self.children[key]

    def run_for(self, key: str | None) -> str | None:
        """The nested run of ``key`` (created if needed), or the parent run when ``key`` is None."""
        return self.parent_run_id if key is None else self.child(key)

    def set_tags_everywhere(self, tags: Mapping[str, str]) -> None:
        """Add ``tags`` to the parent, to every open nested run and to nested runs created later."""
        if not self.is_owner() or self.parent_run_id is None:
            return
        with self._lock:  # a nested run created meanwhile (another thread's node) gets the tags too
            self.parent_tags.update({k: str(v) for k, v in tags.items()})
            runs = (self.parent_run_id, *self.children.values())
        for run_id in runs:
            self.set_tags(run_id, tags)

    def end(self, key: str | None, status: str = "FINISHED") -> None:
        """End the nested run of ``key`` (or the parent when None) with ``status`` if it was started."""
        if not self.is_owner():
            return
        run_id = self.parent_run_id if key is None else self.children.get(key)
        if run_id is None:
            return
        if (
            self.joined
            and status == "FINISHED"
            and self.client.get_run(run_id).info.status in {"FAILED", "KILLED"}
        ):
            return  # a step that ran beside this one failed: the joined run keeps saying so
        self.client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.from_string(status)))

    def _kill_if_open(self) -> None:
        """At interpreter exit: end runs still RUNNING (an interrupted ``kedro run``) as KILLED."""
        if not self.is_owner() or self._closed:
            return
        try:
            self.end_all(dict.fromkeys(self.children, "KILLED"), parent_status="KILLED")
        except Exception:  # the backend may be gone at exit; nothing more can be done
            logger.exception("could not end the MLflow runs at exit")

    def end_all(self, statuses: Mapping[str, str] | None = None, parent_status: str = "FINISHED") -> None:
        """End every nested run (``statuses[key]`` or FINISHED) and then the parent with ``parent_status``."""
        statuses = statuses or {}
        self._closed = True
        self._restore_sigterm()
        for key in list(self.children):
            try:
                self.end(key, statuses.get(key, "FINISHED"))
            except Exception:  # one failing call must not leave the others RUNNING
                logger.exception("could not end MLflow nested run %s", key)
        self.end(None, parent_status)

    # ---- logging --------------------------------------------------------------------------------------
    def log_params(self, run_id: str | None, params: Mapping[str, Any], prefix: str = "") -> None:
        """Log nested ``params`` flattened to dotted keys (in batches of 100)."""
        if run_id is None or not self.is_owner():
            return
        flat = flatten_params(params, prefix)
        # Two nodes of one run may end at once in the runner's worker threads: reading the logged parameters and
        # inserting the new ones is one step, or both insert the same key and the database refuses the second.
        with _PARAMS_LOCK:
            existing = self.client.get_run(run_id).data.params
            fresh = [Param(k, v) for k, v in flat.items() if existing.get(k) != v]
            clashes = [p.key for p in fresh if p.key in existing]
            if clashes:  # MLflow parameters are immutable: keep the first value, say so
                logger.warning(
                    "run %s: parameters %s already logged with other values; kept", run_id, clashes
                )
                fresh = [p for p in fresh if p.key not in existing]
            for batch in _chunks(fresh, BATCH):
                self.client.log_batch(run_id, params=batch)

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log ``metrics`` (keys sanitised for MLflow) at ``step``."""
        if run_id is None or not self.is_owner() or not metrics:
            return
        import time

        now = int(time.time() * 1000)
        entries = [Metric(metric_name(k), float(v), now, int(step)) for k, v in metrics.items()]
        for batch in _chunks(entries, 1000):
            self.client.log_batch(run_id, metrics=batch)

    def set_tags(self, run_id: str | None, tags: Mapping[str, Any]) -> None:
        """Set ``tags`` on a run."""
        if run_id is None or not self.is_owner() or not tags:
            return
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def set_active(tracker: RunTracker | None) -> None:
    """Make ``tracker`` the one the training node's callbacks log through (None clears it)."""
    global _active  # noqa: PLW0603 - one tracker per process, set by the Kedro hook
    with _active_lock:
        _active = tracker


def active_tracker() -> RunTracker | None:
    """The tracker of the current ``kedro run`` in this process, or None (not tracking, or a worker)."""
    tracker = _active
    if tracker is None or not tracker.is_owner() or tracker.parent_run_id is None:
        return None
    return tracker


_experiment_name = "alloy_mtl"


def set_experiment_name(name: str) -> None:
    """Record the experiment of this project (from ``mlflow.yml``) for code that runs outside a tracked run."""
    global _experiment_name  # noqa: PLW0603 - set once by the Kedro hook
    _experiment_name = name


def experiment_name() -> str:
    """The experiment configured in ``mlflow.yml`` (``alloy_mtl`` by default)."""
    return _experiment_name
