"""Project hooks: MLflow tracking of every ``kedro run`` (see ``alloy_mtl.tracking``).

* ``after_context_created``: read ``conf/<env>/mlflow.yml``, resolve the tracking URI (absolute from the
  project root) and point MLflow at it (the registry and inference use it even when tracking is off).
* ``before_pipeline_run``: check the backend is reachable (fail before any node runs, naming the URI),
  then open the parent run with provenance tags and the resolved parameters (dotted keys).
* ``before_node_run``: open the nested run of a namespaced node (``resnet18.train`` -> run ``resnet18``) so
  the training node's epoch callback has a run to log to.
* ``after_dataset_saved`` / ``after_dataset_loaded``: log each dataset to its run (``tracking.layout``);
  fingerprint the model input.
* ``after_node_run``: log the Data Docs folder after the validation node.
* ``on_node_error`` / ``on_pipeline_error`` / ``after_pipeline_run``: end every run, FAILED where work failed
  or never finished, never left RUNNING.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from mlflow.tracking import MlflowClient

from alloy_mtl.config import parse_params
from alloy_mtl.data.params import ValidationParams
from alloy_mtl.parameters import with_defaults
from alloy_mtl.physics.calibrated_generation import simulated_instrument
from alloy_mtl.tracking import layout
from alloy_mtl.tracking.config import (
    TrackingSettings,
    TrackingUnavailableError,
    check_reachable,
    default_artifact_location,
    parse_settings,
    resolve_tracking_uri,
)
from alloy_mtl.tracking.promotion import FINGERPRINT_TAG
from alloy_mtl.tracking.provenance import provenance_tags
from alloy_mtl.tracking.runs import RunTracker, ensure_experiment, set_active, set_experiment_name
from alloy_mtl.tracking.stale_runs import end_stale_runs

logger = logging.getLogger(__name__)

FINGERPRINTED = "model_input"


def trained_on_simulation(params: Mapping[str, Any]) -> bool:
    """Whether a run's models learn from simulated images (generated data; the mixed option's few lab images
    included), so that their logged model records the simulated instrument. A lab folder's instrument is unknown:
    a simulated one would be a false reference for the drift alarm."""
    return (params.get("data_source") or {}).get("kind", "generated") == "generated"


class MlflowTrackingHooks:
    """One MLflow parent run per ``kedro run`` and one nested run per model (plain MLflow client API)."""

    def __init__(self) -> None:
        self.settings = TrackingSettings()
        self.uri: str | None = None
        self.project_path: Path | None = None
        self.env: str | None = None
        self.params: dict[str, Any] = {}
        self.tracker: RunTracker | None = None
        self.catalog: Any = None
        self._remaining: Counter[str] = Counter()
        self._failed: set[str] = set()
        self._fingerprinted = False
        self._lock = threading.Lock()

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Resolve and set the tracking URI from ``mlflow.yml`` / ``MLFLOW_TRACKING_URI``."""
        try:
            conf = context.config_loader["mlflow"]
        except (KeyError, MissingConfigException):
            conf = {}
        self.settings = parse_settings(conf, where=f"conf/{{base,{context.env}}}/mlflow.yml")
        self.project_path = Path(context.project_path)
        self.env = context.env
        self.uri, source = resolve_tracking_uri(self.project_path, self.settings.tracking_uri)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        set_experiment_name(self.settings.experiment)
        self.params = with_defaults(context.params)  # the YAML values with the typed models' defaults
        logger.info("MLflow tracking URI %s (from %s)", self.uri, source)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        """Check the backend, then open the parent run (unless tracking is off for this pipeline)."""
        if self.uri is None:  # a session without after_context_created (should not happen)
            return
        check_reachable(self.uri, self.settings.timeout_s)
        names = list(run_params.get("pipeline_names") or ["__default__"])
        label = "+".join(names)
        if not self.settings.enabled or all(n in self.settings.disabled_pipelines for n in names):
            logger.info("MLflow tracking is off for pipeline %s", label)
            return
        client = MlflowClient(self.uri)
        try:
            artifacts = default_artifact_location(
                self.uri, self.settings.artifact_location, self.project_path or ".", self.settings.experiment
            )
            experiment_id = ensure_experiment(client, self.settings.experiment, artifacts)
        except Exception as exc:
            raise TrackingUnavailableError(
                f"MLflow tracking URI {self.uri}: {type(exc).__name__}: {exc}"
            ) from exc
        try:  # runs of processes killed with SIGKILL on this host
            end_stale_runs(client, experiment_id)
        except Exception:  # tidying must never stop a run
            logger.warning("could not check for stale MLflow runs", exc_info=True)
        joined = os.environ.get("MLFLOW_RUN_ID", "").strip()
        if joined:  # a Kubeflow step: the run the first step opened is the parent, in its experiment
            try:
                experiment_id = client.get_run(joined).info.experiment_id
            except Exception as exc:
                raise TrackingUnavailableError(
                    f"MLFLOW_RUN_ID {joined}: not a run at {self.uri}: {type(exc).__name__}: {exc}"
                ) from exc
        tracker = RunTracker(client, experiment_id)
        if "params:generation" in pipeline.inputs():  # as resolved (the calibrated instrument, if any)
            self.params["generation"] = catalog.load("params:generation")
            if trained_on_simulation(self.params):
                tracker.instrument = simulated_instrument(self.params["generation"])
        tags = provenance_tags(self.project_path or ".", self.env, label, run_params.get("run_id"))
        if joined:
            tracker.join_parent(joined, tags, self.params)
        else:
            tracker.start_parent(self.settings.run_name or label, tags, self.params)
        self.tracker = tracker
        self.catalog = catalog
        self._remaining = Counter(key for node in pipeline.nodes for key in _node_keys(node))
        self._failed = set()
        self._fingerprinted = False
        set_active(tracker)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Open the nested run of a namespaced node before it runs (the epoch callback logs to it)."""
        if self.tracker is not None and node.namespace:
            self.tracker.child(node.namespace.split(".")[0])

    @hook_impl
    def after_node_run(self, node: Node, inputs: dict[str, Any]) -> None:
        """Count the node done, log its parameters to its model runs; log the Data Docs folder after the
        validation node."""
        if self.tracker is None:
            return
        given = {
            name.removeprefix("params:"): value
            for name, value in inputs.items()
            if name.startswith("params:") and not _training_param(name)
        }
        settings = {key: value for key, value in with_defaults(given).items() if key in given}  # resolved
        for key in _node_keys(node):
            with self._lock:  # nodes end in the runner's worker threads
                self._remaining[key] -= 1
            if settings:  # e.g. evaluation.* (training parameters come merged, from the training summary)
                self.tracker.log_params(self.tracker.child(key), settings)
        if "params:validation" in inputs and self.project_path is not None:
            docs = parse_params(ValidationParams, inputs["params:validation"], "validation").data_docs_dir
            folder = self.project_path / docs
            if folder.is_dir() and self.tracker.parent_run_id:
                self.tracker.client.log_artifacts(self.tracker.parent_run_id, str(folder), "data_docs")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        """Log the dataset to its run; fingerprint the model input."""
        self._log(dataset_name, data)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        """Fingerprint the model input when a pipeline starts from it."""
        if dataset_name == FINGERPRINTED:
            self._fingerprint(data)

    def _log(self, dataset_name: str, data: Any) -> None:
        if self.tracker is None:
            return
        if dataset_name == FINGERPRINTED:
            self._fingerprint(data)
        layout.log_dataset(self.tracker, dataset_name, data, self._saved_path(dataset_name))

    def _saved_path(self, dataset_name: str) -> Path | None:
        """The local file or folder the catalog saved ``dataset_name`` to (None if remote or unknown).

        Reads the ``_filepath``/``_protocol`` attributes of kedro-datasets' file datasets, as kedro-mlflow's
        ``MlflowArtifactDataset`` does.
        """
        try:
            dataset = self.catalog.get(dataset_name)
        except Exception:
            return None
        path = getattr(dataset, "_filepath", None)
        if path is None or getattr(dataset, "_protocol", "file") != "file":
            return None
        return Path(str(path))

    def _fingerprint(self, data: Any) -> None:
        with self._lock:  # several nodes load the model input at once under a threaded runner
            if self.tracker is None or self._fingerprinted or not hasattr(data, "images"):
                return
            self._fingerprinted = True
        fingerprint = layout.dataset_fingerprint(data.images, data.metadata)
        self.tracker.set_tags_everywhere({FINGERPRINT_TAG: fingerprint})

    @hook_impl
    def on_node_error(self, node: Node) -> None:
        """Remember which model runs failed."""
        self._failed.update(_node_keys(node))

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        """End the runs: FAILED where a node failed or never ran, FINISHED where all work completed."""
        if self.tracker is None:
            return
        statuses = {
            key: "FAILED" if key in self._failed or self._remaining[key] > 0 else "FINISHED"
            for key in self.tracker.children
        }
        logger.error("pipeline failed (%s); MLflow runs ended as %s", type(error).__name__, statuses)
        self._close(statuses, "FAILED")

    @hook_impl
    def after_pipeline_run(self) -> None:
        """End every run as FINISHED."""
        if self.tracker is not None:
            self._close({}, "FINISHED")

    def _close(self, statuses: dict[str, str], parent_status: str) -> None:
        tracker, self.tracker = self.tracker, None
        set_active(None)
        if tracker is not None:
            tracker.end_all(statuses, parent_status)


def _training_param(name: str) -> bool:
    """``params:training`` and ``params:<arch>.train_options``: logged merged, from the training summary."""
    return name == "params:training" or name.endswith(".train_options")


def _node_keys(node: Node) -> set[str]:
    """The model runs a node works for: its top-level namespace, or the namespaces of its outputs."""
    if node.namespace:
        return {node.namespace.split(".")[0]}
    keys = set()
    for output in node.outputs:
        target = layout.route(output)
        if target is not None and target[0] is not None:
            keys.add(target[0])
    return keys
