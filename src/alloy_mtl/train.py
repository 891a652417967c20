"""``torchrun`` entry point: one architecture's training node, data-parallel over N processes (GPUs).

::

    torchrun --standalone --nproc_per_node=4 -m alloy_mtl.train --arch resnet18 --env paper \\
        --params training.epochs=20

Rank 0 runs ``kedro run --pipeline train_<arch>`` in-process (with ``--nodes`` when given): the session's hooks
track to MLflow, the catalog saves the outputs, evaluation nodes follow on rank 0 alone. Every other rank
loads the same inputs from the catalog and runs only the training node(s), whose outputs it drops; inside
the node, ``train_from_params`` joins the process group (``training.distributed: auto``) and trains one DDP
replica. A Kubeflow GPU step calls this with ``--nproc_per_node`` equal to its GPU count.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from alloy_mtl.mtl.parallel.process_group import is_main_process, teardown_distributed
from alloy_mtl.parameter_hooks import resolved_generation

logger = logging.getLogger(__name__)

#: The node function every rank runs; the other nodes of the pipeline run on rank 0 only.
TRAINING_FUNCTION = "train_architecture"


def runtime_params(pairs: str | None) -> dict[str, Any]:
    """``a.b=1,c=x`` (as ``kedro run --params`` takes it) -> ``{"a": {"b": 1}, "c": "x"}``; values read as YAML.

    Raises:
        ValueError: a pair without ``=``.
    """
    params: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in (pairs or "").split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--params: '{pair}' is not KEY=VALUE")
        node = params
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return params


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module note)."""
    parser = argparse.ArgumentParser(
        prog="torchrun ... -m alloy_mtl.train", description=__doc__.split("\n")[0]
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="architecture: runs the train_<arch> pipeline")
    which.add_argument("--pipeline", help="a registered pipeline holding training nodes")
    parser.add_argument("--nodes", default=None, help="comma-separated node names (as kedro run --nodes)")
    parser.add_argument("--env", default=None, help="Kedro configuration environment, e.g. paper")
    parser.add_argument("--params", default=None, help="runtime parameters, as kedro run --params")
    parser.add_argument("--project-path", default=".", type=Path, help="the Kedro project (default: .)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the training node(s) on this rank (see the module note)."""
    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    args = parse_args(argv)
    name = args.pipeline or f"train_{args.arch}"
    nodes = [n for n in (args.nodes or "").split(",") if n] or None
    project = args.project_path.resolve()
    bootstrap_project(project)
    params = runtime_params(args.params)
    try:
        with KedroSession.create(project_path=project, env=args.env, runtime_params=params) as session:
            if is_main_process():
                session.run(pipeline_names=[name], node_names=nodes)
                return
            context = session.load_context()
            pipeline = pipelines[name]
            if nodes:
                pipeline = pipeline.filter(node_names=nodes)
            training = [n for n in pipeline.nodes if n.func.__name__ == TRAINING_FUNCTION]
            if not training:
                raise ValueError(f"pipeline {name!r} has no {TRAINING_FUNCTION} node to run data-parallel")
            for node in training:
                logger.info("rank replica runs %s (outputs are rank 0's to save)", node.name)
                inputs = {dataset: context.catalog.load(dataset) for dataset in node.inputs}
                if "params:generation" in inputs:  # as the hooks resolve it for rank 0
                    inputs["params:generation"] = resolved_generation(context.catalog)
                node.run(inputs)
    finally:
        teardown_distributed()


if __name__ == "__main__":
    main()
