"""The first step of a pipeline run: open the MLflow parent run and hand its id to every other step.

``start_parent_run`` is deliberately small and alone: the tracking layout belongs to
``alloy_mtl.tracking``, which can replace it without touching the compiler. The step writes the run id
(or an empty string when MLflow is not installed or no tracking URI is configured) to the file KFP reads
as the task's output parameter; the other steps get it as ``MLFLOW_RUN_ID`` (see :mod:`.step`).

    python -m alloy_mtl.deploy.mlflow_run --output /tmp/outputs/run_id --run-name <kfp run name>
"""

from __future__ import annotations

import argparse
import importlib.util
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


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of the MLflow step: write the run id to ``--output``."""
    parser = argparse.ArgumentParser(prog="python -m alloy_mtl.deploy.mlflow_run", description=__doc__)
    parser.add_argument("--output", type=Path, required=True, help="file KFP reads as the run id output")
    parser.add_argument("--run-name", default="")
    parser.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME"))
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tags = dict(tag.partition("=")[::2] for tag in args.tag)
    run_id = start_parent_run(args.run_name, args.experiment, tags) or ""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
