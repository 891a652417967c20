"""What every pipeline step executes: ``kedro run --env ... --pipeline ... --nodes ... --params ...``.

The container components and the lightweight ``kfp.local`` components call this same entry point::

    python -m alloy_mtl.deploy.step --env base --pipeline train_all --nodes resnet18.train,resnet18.evaluate \
        --param training.epochs:int=10 --mlflow-run-id <id>

``--param KEY:TYPE=VALUE`` carries a typed pipeline parameter; an empty ``str`` value keeps the configured
Kedro value. A non-empty ``--mlflow-run-id`` becomes ``MLFLOW_RUN_ID``, so the step joins the parent run
the first step opened. ``--nproc-per-node N`` (N > 1: the step's GPU count) runs the nodes data-parallel
instead: ``torchrun --standalone --nproc_per_node=N -m alloy_mtl.train --pipeline ... --nodes ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from alloy_mtl.deploy.ui_outputs import fill_artifacts, write_executor_output

logger = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class StepArgumentError(ValueError):
    """A ``--param`` that cannot be passed to ``kedro run --params``."""


def parse_param(argument: str) -> tuple[str, str | None]:
    """``KEY:TYPE=VALUE`` -> (``KEY``, the value as Kedro's ``--params`` should read it, or None to skip).

    KFP renders numbers as it stores them (``10`` or ``10.0``): an ``int`` that is whole is written as one.

    Raises:
        StepArgumentError: naming the argument, for a malformed one or a value of the wrong type.
    """
    head, sep, value = argument.partition("=")
    key, colon, kind = head.rpartition(":")
    if not sep or not colon or not key:
        raise StepArgumentError(f"--param '{argument}' is not KEY:TYPE=VALUE")
    if kind == "str":
        if value == "":
            return key, None
        if "," in value:
            raise StepArgumentError(f"--param '{key}': kedro run --params cannot carry a comma in '{value}'")
        return key, _yaml_string(value)
    try:
        if kind == "int":
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return key, str(int(number))
        if kind == "float":
            return key, repr(float(value))
        if kind == "bool" and value.lower() in _TRUE | _FALSE:
            return key, "true" if value.lower() in _TRUE else "false"
    except ValueError:
        pass
    raise StepArgumentError(f"--param '{key}': '{value}' is not a valid {kind}")


def _yaml_string(value: str) -> str:
    """Kedro reads ``--params`` values as YAML: quote a string that YAML would read as something else."""
    try:
        plain = isinstance(yaml.safe_load(value), str)
    except yaml.YAMLError:
        plain = False
    return value if plain else "'" + value.replace("'", "''") + "'"


def kedro_command(pipeline: str, env: str | None, nodes: str | None, params: Mapping[str, str]) -> list[str]:
    """The ``kedro run`` command line of one step."""
    command = [sys.executable, "-m", "kedro", "run", "--pipeline", pipeline]
    if env:
        command += ["--env", env]
    if nodes:
        command += ["--nodes", nodes]
    if params:
        command += ["--params", ",".join(f"{key}={value}" for key, value in params.items())]
    return command


def torchrun_command(
    pipeline: str, env: str | None, nodes: str | None, params: Mapping[str, str], nproc_per_node: int
) -> list[str]:
    """The data-parallel command line of one step: :func:`kedro_command`'s arguments under torchrun."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += [f"--nproc_per_node={nproc_per_node}", "-m", "alloy_mtl.train"]
    return launcher + kedro_command(pipeline, env, nodes, params)[4:]


def run_step(
    pipeline: str,
    *,
    env: str | None = None,
    nodes: str | None = None,
    params: Sequence[str] = (),
    mlflow_run_id: str = "",
    project_dir: Path | None = None,
    nproc_per_node: int = 1,
) -> int:
    """Run the Kedro nodes of one step in ``project_dir`` and return ``kedro run``'s exit status.

    With ``nproc_per_node`` > 1 the nodes run under torchrun, one DDP process per GPU.
    """
    overrides = {key: value for key, value in map(parse_param, params) if value is not None}
    command = (
        torchrun_command(pipeline, env, nodes, overrides, nproc_per_node)
        if nproc_per_node > 1
        else kedro_command(pipeline, env, nodes, overrides)
    )
    environment = dict(os.environ)
    if mlflow_run_id:
        environment["MLFLOW_RUN_ID"] = mlflow_run_id
    logger.info("Step runs: %s (MLFLOW_RUN_ID=%s)", " ".join(command[1:]), mlflow_run_id or "unset")
    return subprocess.run(command, cwd=project_dir, env=environment, check=False).returncode


def _in_project(
    root: Path, metrics_file: str | None, markdown_file: str | None, suite_files: Mapping[str, str] | None
) -> tuple[str | None, str | None, dict[str, str]]:
    """A step's report files (catalog paths, relative to the project) under the project directory ``root``."""
    return (
        str(root / metrics_file) if metrics_file else None,
        str(root / markdown_file) if markdown_file else None,
        {model: str(root / path) for model, path in (suite_files or {}).items()},
    )


def run_and_report(
    project_dir: str,
    arguments: Sequence[str],
    artifacts: Mapping[str, Any] | None = None,
    *,
    metrics_file: str | None = None,
    markdown_file: str | None = None,
    suite_files: Mapping[str, str] | None = None,
) -> None:
    """A ``kfp.local`` step: run :func:`main` in ``project_dir``, then fill its UI ``artifacts`` (KFP's artifact
    objects) from the files its nodes wrote (paths relative to the project).

    Raises:
        RuntimeError: ``kedro run`` failed (the component, and so the run, fails).
    """
    status = main([*arguments, "--project-dir", project_dir])
    if status != 0:
        raise RuntimeError(f"kedro run exited with status {status}: {' '.join(arguments)}")
    if artifacts:
        metrics, markdown, suites = _in_project(Path(project_dir), metrics_file, markdown_file, suite_files)
        fill_artifacts(artifacts, metrics, markdown, suite_files=suites)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of a step."""
    parser = argparse.ArgumentParser(prog="python -m alloy_mtl.deploy.step", description=__doc__)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--env", default=None)
    parser.add_argument("--nodes", default=None)
    parser.add_argument("--param", action="append", default=[], metavar="KEY:TYPE=VALUE")
    parser.add_argument("--mlflow-run-id", default="")
    parser.add_argument("--project-dir", type=Path, default=None)
    parser.add_argument(
        "--nproc-per-node", type=int, default=1, help="GPUs of the step: > 1 runs torchrun DDP"
    )
    parser.add_argument(
        "--data-fingerprint",
        default="",
        help="the data source's content fingerprint (part of KFP's cache key)",
    )
    parser.add_argument("--report-metrics", default=None, help="a model's metrics JSON the step writes")
    parser.add_argument("--report-markdown", default=None, help="a markdown report the step writes")
    parser.add_argument(
        "--report-suite", nargs=2, action="append", default=[], metavar=("MODEL", "PATH"),
        help="a model's robustness-suite scores the step writes",
    )  # fmt: skip
    parser.add_argument("--kfp-output-file", default=None, help="KFP's executor output file")
    parser.add_argument(
        "--kfp-artifact", nargs=3, action="append", default=[], metavar=("NAME", "PATH", "URI")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.data_fingerprint:
        logger.info("data source fingerprint: %s", args.data_fingerprint)
    try:
        status = run_step(
            args.pipeline,
            env=args.env,
            nodes=args.nodes,
            params=args.param,
            mlflow_run_id=args.mlflow_run_id,
            project_dir=args.project_dir,
            nproc_per_node=args.nproc_per_node,
        )
    except StepArgumentError as error:
        parser.error(str(error))
    if status == 0 and args.kfp_output_file:
        reports = _in_project(
            args.project_dir or Path.cwd(), args.report_metrics, args.report_markdown, dict(args.report_suite)
        )
        write_executor_output(
            args.kfp_output_file, {name: (path, uri) for name, path, uri in args.kfp_artifact}, *reports
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
