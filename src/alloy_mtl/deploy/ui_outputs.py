"""What a step shows in the Kubeflow UI: its model's metrics, confusion matrix and its markdown report.

A step's nodes write their reports to the catalog as on a workstation; after they ran, the step reads the
files the plan named (:class:`~alloy_mtl.deploy.plan.StepReports`) and hands them to KFP as output artifacts:
``metrics`` (``system.Metrics``: a model's headline scores, or every model's robustness-suite summary, as
metadata), ``confusion_matrix``
(``system.ClassificationMetrics``) and ``report`` (``system.Markdown``: the file's text). A container
declares the artifacts' metadata in KFP's executor output file (what KFP's own Python components write); the
``kfp.local`` variant logs them on the artifact objects KFP hands its lightweight components.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfp import dsl

logger = logging.getLogger(__name__)

METRICS = "metrics"
CONFUSION = "confusion_matrix"
REPORT = "report"


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scores a model's ``metrics.json`` (:func:`alloy_mtl.evaluation.report.evaluate_model`) leads with,
    as flat finite numbers: test-split macro AP, accuracy and per-alloy AP, each regression target's R2 and
    MAE, and the large evaluation set's macro AP where there is one (the robustness suite runs in a later
    step: its scores are in that step's report)."""
    flat: dict[str, Any] = {}
    classification = metrics.get("classification") or {}
    flat["test_macro_ap"] = classification.get("macro_ap")
    flat["test_accuracy"] = classification.get("accuracy")
    for alloy, value in (classification.get("ap") or {}).items():
        flat[f"test_ap_{alloy}"] = value
    for task, scores in (metrics.get("regression") or {}).items():
        overall = scores.get("overall") if isinstance(scores, Mapping) else None
        if isinstance(overall, Mapping):
            flat[f"test_r2_{task}"] = overall.get("r2")
            flat[f"test_mae_{task}"] = overall.get("mae")
    evaluation_set = (metrics.get("evaluation_set") or {}).get("classification") or {}
    flat["evaluation_set_macro_ap"] = evaluation_set.get("macro_ap")
    return {
        key: float(value)
        for key, value in flat.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def confusion(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[int]]] | None:
    """``(alloys, rows)`` of the test split's confusion matrix (rows true, columns predicted); None if absent."""
    classification = metrics.get("classification") or {}
    matrix = classification.get("confusion_matrix")
    labels = classification.get("alloys") or list((classification.get("ap") or {}).keys())
    if not matrix or len(labels) != len(matrix):
        return None
    return [str(label) for label in labels], [[int(v) for v in row] for row in matrix]


def suite_metrics(suites: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Each model's robustness-suite summary (worst and mean macro AP over the unseen-detector and in-tolerance
    conditions, worst gap to the physics ceiling) as ``<model>_<score>``."""
    return {
        f"{model}_{key}": float(value)
        for model, scores in suites.items()
        for key, value in ((scores.get("summary") or {}).items())
        if key != "n_conditions" and isinstance(value, int | float) and math.isfinite(value)
    }


def fill_artifacts(
    artifacts: Mapping[str, dsl.Artifact],
    metrics_file: str | None,
    markdown_file: str | None,
    paths: Mapping[str, str] | None = None,
    suite_files: Mapping[str, str] | None = None,
) -> None:
    """Log the step's reports on KFP artifact objects (``metrics``, ``confusion_matrix``, ``report``, those
    present): a model's headline scores and confusion matrix, or the suite's summary of every model
    (``suite_files``: model -> its robustness JSON); the markdown is written to the report's local file
    (``paths``, else the artifact's own)."""
    if suite_files and METRICS in artifacts:
        suites = {model: json.loads(Path(path).read_text()) for model, path in suite_files.items()}
        for key, value in suite_metrics(suites).items():
            artifacts[METRICS].log_metric(key, value)
    if metrics_file and (METRICS in artifacts or CONFUSION in artifacts):
        metrics = json.loads(Path(metrics_file).read_text())
        if METRICS in artifacts:
            for key, value in headline_metrics(metrics).items():
                artifacts[METRICS].log_metric(key, value)
        found = confusion(metrics)
        if CONFUSION in artifacts and found is not None:
            artifacts[CONFUSION].log_confusion_matrix(*found)
    if markdown_file and REPORT in artifacts:
        target = Path((paths or {}).get(REPORT) or artifacts[REPORT].path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Path(markdown_file).read_text())


def write_executor_output(
    output_file: str,
    outputs: Mapping[str, tuple[str, str]],
    metrics_file: str | None,
    markdown_file: str | None,
    suite_files: Mapping[str, str] | None = None,
) -> None:
    """Fill the output artifacts of a container step and declare their metadata in KFP's executor output file.

    Args:
        output_file: ``{{$.outputs.output_file}}``.
        outputs: artifact name -> (its local path, its URI), from the container's placeholders.
        metrics_file: the model's metrics JSON, if the step has one.
        markdown_file: the markdown report, if the step has one.
        suite_files: model -> its robustness JSON, for a step that runs the suite.
    """
    kinds = {METRICS: dsl.Metrics, CONFUSION: dsl.ClassificationMetrics, REPORT: dsl.Markdown}
    artifacts = {name: kinds[name](name=name, uri=uri) for name, (_, uri) in outputs.items()}
    paths = {name: path for name, (path, _) in outputs.items()}
    fill_artifacts(artifacts, metrics_file, markdown_file, paths, suite_files)
    for name, artifact in artifacts.items():
        path = Path(paths[name])
        if not path.exists():  # the UI reads the metadata; KFP uploads whatever file lies at the path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(artifact.metadata))
    executor_output = {
        "artifacts": {
            name: {"artifacts": [{"name": name, "uri": artifact.uri, "metadata": artifact.metadata}]}
            for name, artifact in artifacts.items()
        }
    }
    Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    Path(output_file).write_text(json.dumps(executor_output))
    logger.info("Kubeflow UI outputs: %s", ", ".join(sorted(artifacts)) or "none")
