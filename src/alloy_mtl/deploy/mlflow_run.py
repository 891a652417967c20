"""The first and the exit task of a pipeline run: open the MLflow parent run, and end it as the run ended.

``start_parent_run`` is deliberately small and alone: the tracking layout belongs to
``alloy_mtl.tracking``, which can replace it without touching the compiler. The step writes the run id
(or an empty string when MLflow is not installed or no tracking URI is configured) to the file KFP reads
as the task's output parameter; the other steps get it as ``MLFLOW_RUN_ID`` (see :mod:`.step`).

``end_parent_run`` is the exit handler's task: KFP runs it after every other task, whatever happened to them,
with the run's final status. A step that was killed (out of memory, a deleted pod), never started (an image
that could not be pulled) or failed and was retried cannot be trusted to have left the parent run's status
right; the exit task sets it from the run's final state (SUCCEEDED -> FINISHED, CANCELLED -> KILLED, else
FAILED) and, unless the run succeeded, ends nested runs still RUNNING as KILLED (their step died with them open). An exit task may not read another task's output, so
it finds the parent by the ``kfp.run_id`` tag the first task set.

    python -m alloy_mtl.deploy.mlflow_run --output /tmp/outputs/run_id --run-name <kfp run name>
    python -m alloy_mtl.deploy.mlflow_run --end --kfp-run-id <kfp run id> --final-status '<json>'
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)


def start_parent_run(
    run_name: str, experiment: str | None = None, tags: Mapping[str, str] | None = None
) -> str | None:
    """Open an MLflow run and return its id; None when MLflow is not importable or not configured.

    The tracking URI comes from ``MLFLOW_TRACKING_URI`` (set on every step from kubeflow.yml's
    ``mlflow.tracking_uri`` or a secret). The run is ended here and resumed by each step through
    ``MLFLOW_RUN_ID``.
    """
    if importlib.util.find_spec("mlflow") is None:
        logger.info("MLflow is not installed: no parent run")
        return None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        logger.info("MLFLOW_TRACKING_URI is not set: no parent run")
        return None
    import mlflow

    if experiment:
        mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name or None, tags=dict(tags or {})) as run:
        run_id = run.info.run_id
    logger.info("Opened MLflow parent run %s (%s) at %s", run_id, run_name, mlflow.get_tracking_uri())
    return run_id


KFP_RUN_TAG = "kfp.run_id"
"""Tag of the parent run: the Kubeflow run that opened it (how the exit task finds it)."""
FINAL_STATE_TAG = "kfp.final_state"
RUN_STATUS = {"SUCCEEDED": "FINISHED", "CANCELLED": "KILLED", "CANCELED": "KILLED", "CANCELING": "KILLED"}
"""KFP final state -> MLflow run status (anything else: FAILED)."""


def final_state(status: str | Mapping[str, object]) -> tuple[str, str]:
    """``(state, error message)`` of KFP's ``PipelineTaskFinalStatus`` (a JSON string in a container, a mapping
    in tests); an unreadable status counts as ``FAILED``."""
    if isinstance(status, str):
        try:
            status = json.loads(status) if status.strip() else {}
        except json.JSONDecodeError:
            return "FAILED", f"unreadable final status {status[:200]!r}"
    if not isinstance(status, Mapping):
        return "FAILED", f"unreadable final status {status!r}"
    error = status.get("error") or {}
    message = str(error.get("message", "")) if isinstance(error, Mapping) else str(error)
    return str(status.get("state") or "FAILED").upper(), message


def end_parent_run(kfp_run_id: str, state: str, error: str = "", experiment: str | None = None) -> str | None:
    """End the parent run of Kubeflow run ``kfp_run_id`` as the run ended (see the module docstring); returns its
    id, None when MLflow is off or no parent run carries the tag (the first task failed before opening it)."""
    if importlib.util.find_spec("mlflow") is None or not os.environ.get("MLFLOW_TRACKING_URI"):
        logger.info("MLflow is not installed or not configured: no parent run to end")
        return None
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiments = (
        [found.experiment_id]
        if experiment and (found := client.get_experiment_by_name(experiment))
        else [e.experiment_id for e in client.search_experiments()]
    )
    parents = [
        run
        for run in client.search_runs(experiments, filter_string=f"tags.`{KFP_RUN_TAG}` = '{kfp_run_id}'")
        if MLFLOW_PARENT_RUN_ID not in run.data.tags
    ]
    if not parents:
        logger.warning("no MLflow parent run is tagged %s=%s: nothing to end", KFP_RUN_TAG, kfp_run_id)
        return None
    status = RUN_STATUS.get(state, "FAILED")
    for parent in parents:
        run_id = parent.info.run_id
        if status != "FINISHED":
            children = client.search_runs(
                [parent.info.experiment_id],
                filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}' AND attributes.status = 'RUNNING'",
            )
            for child in children:
                client.set_terminated(child.info.run_id, status="KILLED")
        client.set_tag(run_id, FINAL_STATE_TAG, state)
        if error:
            client.set_tag(run_id, "kfp.error", error[:5000])
        client.set_terminated(run_id, status=status)
        logger.info("MLflow parent run %s ended %s (Kubeflow run %s %s)", run_id, status, kfp_run_id, state)
    return parents[0].info.run_id


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of the MLflow tasks: write the run id to ``--output``, or with ``--end`` end the
    parent run of ``--kfp-run-id`` as ``--final-status`` says."""
    parser = argparse.ArgumentParser(prog="python -m alloy_mtl.deploy.mlflow_run", description=__doc__)
    parser.add_argument("--output", type=Path, help="file KFP reads as the run id output")
    parser.add_argument("--run-name", default="")
    parser.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME"))
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--end", action="store_true", help="end the parent run (the exit handler's task)")
    parser.add_argument("--kfp-run-id", default="")
    parser.add_argument("--final-status", default="", help="KFP's PipelineTaskFinalStatus as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.end:
        if not args.kfp_run_id:
            parser.error("--end needs --kfp-run-id")
        end_parent_run(args.kfp_run_id, *final_state(args.final_status), experiment=args.experiment)
        return 0
    if args.output is None:
        parser.error("--output is required (or --end)")
    tags = dict(tag.partition("=")[::2] for tag in args.tag)
    run_id = start_parent_run(args.run_name, args.experiment, tags) or ""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
