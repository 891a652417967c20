"""What each pipeline dataset logs, and to which run: the MLflow layout of a ``kedro run``.

Namespaced datasets (``<model>.<leaf>``: ``resnet18.metrics``, ``ensemble_soft.figures``, ...) go to the
nested run of ``<model>``; project-wide datasets (comparison, validation) go to the parent run.

| dataset leaf | logged as |
|---|---|
| ``model`` (an architecture's bundle) | the pyfunc model ``model`` (+ tag ``alloy_mtl.model_uri``) |
| ``training_summary`` | the resolved training parameters (dotted keys), ``training_summary.json``, size/time metrics |
| ``history`` | ``history.csv`` (the per-epoch metrics are logged live by the epoch callback) |
| ``metrics`` | ``metrics.json`` and every numeric leaf as metric ``test.<path>`` |
| ``figures`` | ``figures/<name>.png`` |
| ``test_predictions`` | ``test_predictions.csv`` |
| ``robustness`` (the robustness suite's scores) | ``robustness.json`` and every numeric leaf as metric
  ``robustness.<condition>.<metric>`` |
| ``comparison_table`` / ``comparison_markdown`` / ``ap_heatmap`` / ``ensemble_selection`` | ``comparison/`` on
  the parent |
| ``robustness_table`` / ``robustness_markdown`` / ``robustness_figure`` | ``robustness/`` on the parent |
| ``ingest_report`` / ``validation_report`` / ``split_summary`` | ``data/`` on the parent (the ingest report also
  when the ingest then refuses the data: the failed run keeps every file's status) |
| ``registry_decision`` / ``registry_report`` | ``registry/decision.json`` / ``registry/decision.md`` on the parent |
| ``external_comparison_table`` / ``external_comparison_markdown`` / ``external_conformal_markdown`` | ``external/``
  on the parent |
| ``calibrated_instrument`` / ``instrument_calibration_report`` / ``instrument_calibration_figure`` |
  ``instrument/`` on the parent |
| ``inference_drift_table`` / ``inference_drift_markdown`` | ``drift/`` on the parent; the table also as metrics
  ``drift.alarms``, ``drift.batch_<n>.beam_statistic`` ... |
| ``inference_unit_conformal`` / ``inference_unit_conformal_markdown`` | ``conformal/`` on the parent |
| ``physics_unknown_summary`` / ``physics_unknown_ood_report`` | ``unknown_materials/summary.json`` /
  ``unknown_materials/ood_report.json`` on the parent, the report also as metrics ``unknown_materials.<path>`` |
| ``physics_unknown_answers`` | ``comparison/answers_with_physics.json`` on the parent |
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.tracking.params import flatten_numbers
from alloy_mtl.tracking.promotion import MODEL_URI_TAG
from alloy_mtl.tracking.runs import RunTracker

logger = logging.getLogger(__name__)

MODEL_LEAVES = (
    "model",
    "training_summary",
    "history",
    "metrics",
    "figures",
    "test_predictions",
    "robustness",
)
PARENT_DATASETS: dict[str, str] = {
    "comparison_table": "comparison/comparison.csv",
    "comparison_markdown": "comparison/comparison.md",
    "ap_heatmap": "comparison/ap_heatmap.png",
    "ensemble_selection": "comparison/ensemble_selection.json",
    "robustness_table": "robustness/robustness.csv",
    "robustness_markdown": "robustness/robustness.md",
    "robustness_figure": "robustness/robustness_macro_ap.png",
    "ingest_report": "data/ingest_report.csv",
    "validation_report": "data/validation_report.json",
    "split_summary": "data/split_summary.csv",
    "registry_decision": "registry/decision.json",
    "registry_report": "registry/decision.md",
    "external_comparison_table": "external/comparison.csv",
    "external_comparison_markdown": "external/comparison.md",
    "external_conformal_markdown": "external/conformal.md",
    "calibrated_instrument": "instrument/calibrated_instrument.json",
    "instrument_calibration_report": "instrument/report.md",
    "instrument_calibration_figure": "instrument/residuals.png",
    "inference_drift_table": "drift/drift.csv",
    "inference_drift_markdown": "drift/drift.md",
    "inference_unit_conformal": "conformal/unit_conformal.json",
    "inference_unit_conformal_markdown": "conformal/unit_conformal.md",
    "physics_unknown_summary": "unknown_materials/summary.json",
    "physics_unknown_ood_report": "unknown_materials/ood_report.json",
    "physics_unknown_answers": "comparison/answers_with_physics.json",
}


def route(dataset_name: str) -> tuple[str | None, str] | None:
    """``(model key or None for the parent, leaf)`` for a tracked dataset, None for an untracked one."""
    if dataset_name in PARENT_DATASETS:
        return None, dataset_name
    key, _, leaf = dataset_name.rpartition(".")
    if key and leaf in MODEL_LEAVES:
        return key, leaf
    return None


def log_dataset(  # noqa: PLR0912 (one branch per kind of dataset in the module table)
    tracker: RunTracker, dataset_name: str, data: Any, saved_path: Path | None = None
) -> None:
    """Log a saved dataset's content to its run (see the module table); untracked datasets are ignored.

    ``saved_path``: where the catalog wrote the dataset on the local disk, if known; figures are then logged
    from those PNG files instead of being rendered a second time (rendering ~80 figures doubled the cost).
    """
    target = route(dataset_name)
    if target is None or not tracker.is_owner():
        return
    key, leaf = target
    run_id = tracker.run_for(key)
    if run_id is None:
        return
    client = tracker.client
    if key is None:
        _log_parent(tracker, run_id, leaf, data)
    elif leaf == "model":
        if isinstance(data, Mapping) and "state_dict" in data:
            from alloy_mtl.tracking.model_logging import log_bundle_model

            info = log_bundle_model(
                data, run_id, name="model", tags={"alloy_mtl.model_key": key}, instrument=tracker.instrument
            )
            tracker.set_tags(run_id, {MODEL_URI_TAG: info.model_uri, "alloy_mtl.arch": str(data["arch"])})
    elif leaf == "training_summary":
        summary = dict(data)
        params = summary.pop("params", None)
        if isinstance(params, Mapping):
            tracker.log_params(run_id, params)
        client.log_dict(run_id, dict(data), "training_summary.json")
        tracker.log_metrics(run_id, flatten_numbers(summary, "training"))
    elif leaf in ("metrics", "robustness"):
        client.log_dict(run_id, dict(data), f"{leaf}.json")
        tracker.log_metrics(run_id, flatten_numbers(data, "test" if leaf == "metrics" else leaf))
    elif leaf == "figures":
        for name, figure in dict(data).items():
            png = None if saved_path is None else saved_path / name
            if png is not None and png.is_file():
                client.log_artifact(run_id, str(png), "figures")
            else:
                client.log_figure(run_id, figure, f"figures/{Path(name).with_suffix('.png').name}")
    else:  # history, test_predictions
        _log_artifact_value(client, run_id, f"{leaf}.csv", data)


def _log_parent(tracker: RunTracker, run_id: str, leaf: str, data: Any) -> None:
    """A project-wide dataset to the parent run; the drift table and the physics score's OOD report also as
    metrics."""
    _log_artifact_value(tracker.client, run_id, PARENT_DATASETS[leaf], data)
    if leaf == "physics_unknown_ood_report" and isinstance(data, Mapping):
        tracker.log_metrics(run_id, flatten_numbers(data, "unknown_materials"))
    if leaf == "inference_drift_table" and isinstance(data, pd.DataFrame):
        from alloy_mtl.evaluation.drift import drift_metrics

        tracker.log_metrics(run_id, drift_metrics(data))


def _log_artifact_value(client: Any, run_id: str, artifact_file: str, data: Any) -> None:
    if isinstance(data, pd.DataFrame):
        client.log_text(run_id, data.to_csv(index=False), artifact_file)
    elif isinstance(data, Mapping):
        client.log_dict(run_id, dict(data), artifact_file)
    elif isinstance(data, str):
        client.log_text(run_id, data, artifact_file)
    elif hasattr(data, "savefig"):
        client.log_figure(run_id, data, artifact_file)
    else:
        logger.warning("not logging %s: unsupported type %s", artifact_file, type(data).__name__)


def dataset_fingerprint(images: np.ndarray, metadata: pd.DataFrame) -> str:
    """A 16-hex digest of the model input: image bytes (streamed in chunks), shape, dtype and metadata."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{images.shape}|{images.dtype}".encode())
    flat = images.reshape(len(images), -1) if len(images) else images
    for start in range(0, len(flat), 1024):
        digest.update(np.ascontiguousarray(flat[start : start + 1024]).tobytes())
    digest.update(pd.util.hash_pandas_object(metadata.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()
