"""Project CLI: ``kedro kubeflow compile|upload|run|schedule`` (the logic lives in ``alloy_mtl.deploy``) and
``kedro run`` with this project's default runner.

Kedro adds the commands of this module's ``cli`` group to its own, and a command of the same name replaces
Kedro's: ``run`` is Kedro's own command whose ``--runner`` defaults to
:class:`alloy_mtl.runner.ModelParallelRunner` (independent nodes at once, the cores shared between them)
instead of ``SequentialRunner``. ``python -m alloy_mtl`` looks ``run`` up here too.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from alloy_mtl.deploy.errors import DeployError

logger = logging.getLogger(__name__)

DEFAULT_PIPELINE = "train_all"
DEFAULT_RUNNER = "alloy_mtl.runner.ModelParallelRunner"


def _with_default_runner(command: click.Command, runner: str) -> click.Command:
    """A copy of Kedro's ``run`` command whose ``--runner`` defaults to ``runner`` (every other option, and
    the command's behaviour, unchanged)."""
    params = [copy.copy(param) for param in command.params]
    for param in params:
        if param.name == "runner":
            param.default = runner
            param.show_default = True
            param.help = (
                f"{param.help} Default here: {runner} (independent nodes at once, each with its share of the "
                "cores; --runner-params max_workers=1 runs one at a time)"
            )
    return click.Command(
        name=command.name,
        callback=command.callback,
        params=params,
        help=command.help,
        short_help=command.short_help,
        context_settings=command.context_settings,
    )


def _project_path(obj: Any) -> Path:
    return Path(getattr(obj, "project_path", None) or Path.cwd())


def _pipeline_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--env", "-e", default="base", show_default=True, help="Kedro configuration environment"
    )(func)
    return click.option(
        "--pipeline", "-p", default=DEFAULT_PIPELINE, show_default=True, help="Kedro pipeline"
    )(func)


def _submit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--package",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="compiled YAML to send instead of a fresh compile",
    )(func)
    return click.option(
        "--host", default=None, help="KFP endpoint (else KFP_HOST, else host in kubeflow.yml)"
    )(func)


def _plan(obj: Any, pipeline: str, env: str) -> Any:
    from alloy_mtl.deploy.plan import build_plan
    from alloy_mtl.deploy.project import load_project

    return build_plan(load_project(_project_path(obj), env), pipeline)


@contextmanager
def _package(plan: Any, given: Path | None) -> Iterator[Path]:
    if given is not None:
        yield given
        return
    from alloy_mtl.deploy.compiler import compile_plan

    with tempfile.TemporaryDirectory() as tmp:
        yield compile_plan(plan, Path(tmp) / f"{plan.pipeline}.yaml")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except DeployError as error:
        raise click.ClickException(str(error)) from None


@click.group(name="alloy-mtl")
def cli() -> None:
    """Project commands of alloy-mtl."""


run = _with_default_runner(kedro_run, DEFAULT_RUNNER)
cli.add_command(run)


@cli.group()
def kubeflow() -> None:
    """Compile, upload, run and schedule the Kedro pipelines on Kubeflow Pipelines v2."""


@kubeflow.command()
@_pipeline_options
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML file to write [default: pipelines/<pipeline>.yaml]",
)
@click.pass_obj
def compile(obj: Any, pipeline: str, env: str, output: Path | None) -> None:  # noqa: A001
    """Write the KFP v2 IR YAML of a Kedro pipeline (one container step per node group)."""
    from alloy_mtl.deploy.compiler import compile_plan

    with _errors():
        plan = _plan(obj, pipeline, env)
        target = output or _project_path(obj) / "pipelines" / f"{pipeline}.yaml"
        compile_plan(plan, target)
    click.echo(f"Compiled {pipeline} ({len(plan.steps)} steps) to {target}")


@kubeflow.command()
@_pipeline_options
@_submit_options
@click.pass_obj
def upload(obj: Any, pipeline: str, env: str, host: str | None, package: Path | None) -> None:
    """Upload the pipeline to KFP (a new version when it exists)."""
    from alloy_mtl.deploy import client

    with _errors():
        plan = _plan(obj, pipeline, env)
        endpoint = client.resolve_host(host, plan.config.host)
        settings = client.client_settings(plan.config.client)
        kfp_client = client.connect(endpoint, plan.config.namespace, settings)
        with _package(plan, package) as path:
            pipeline_id, version_id = client.upload(
                kfp_client, endpoint, path, plan.kfp_name, plan.config.namespace
            )
    click.echo(
        f"Uploaded {plan.kfp_name}: pipeline {pipeline_id}"
        + (f", version {version_id}" if version_id else "")
    )


@kubeflow.command(name="run")
@_pipeline_options
@_submit_options
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="pipeline parameter override")
@click.option("--run-name", default=None, help="[default: <pipeline>-<UTC time>]")
@click.option("--experiment", default=None, help="KFP experiment [default: experiment in kubeflow.yml]")
@click.pass_obj
def run_once(
    obj: Any,
    *,
    pipeline: str,
    env: str,
    host: str | None,
    package: Path | None,
    params: tuple[str, ...],
    run_name: str | None,
    experiment: str | None,
) -> None:
    """Start one run of the pipeline, with parameter overrides."""
    from alloy_mtl.deploy import client

    with _errors():
        plan, arguments, endpoint, kfp_client = _submission(obj, pipeline, env, host, params)
        name = run_name or f"{plan.kfp_name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        with _package(plan, package) as path:
            run_id = client.run(
                kfp_client,
                endpoint,
                path,
                arguments=arguments,
                run_name=name,
                experiment=experiment or plan.config.experiment,
                namespace=plan.config.namespace,
            )
    click.echo(f"Started run {name}: {run_id}")


def _submission(
    obj: Any, pipeline: str, env: str, host: str | None, params: tuple[str, ...]
) -> tuple[Any, dict[str, Any], str, Any]:
    """The plan, the typed parameter overrides, the KFP endpoint and a connected client of a run or schedule."""
    from alloy_mtl.deploy import client

    plan = _plan(obj, pipeline, env)
    arguments = client.parse_arguments(params, plan.parameters)
    endpoint = client.resolve_host(host, plan.config.host)
    settings = client.client_settings(plan.config.client)
    return plan, arguments, endpoint, client.connect(endpoint, plan.config.namespace, settings)


@kubeflow.command()
@_pipeline_options
@_submit_options
@click.option("--cron", required=True, help="six fields, seconds first: '0 0 3 * * *' = 03:00 every day")
@click.option("--name", "job_name", default=None, help="recurring run name [default: <pipeline>-schedule]")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="pipeline parameter override")
@click.option("--experiment", default=None, help="KFP experiment [default: experiment in kubeflow.yml]")
@click.option("--max-concurrency", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--catchup/--no-catchup", default=False, show_default=True, help="backfill missed runs")
@click.pass_obj
def schedule(
    obj: Any,
    *,
    pipeline: str,
    env: str,
    host: str | None,
    package: Path | None,
    cron: str,
    job_name: str | None,
    params: tuple[str, ...],
    experiment: str | None,
    max_concurrency: int,
    catchup: bool,
) -> None:
    """Create a recurring run of the pipeline from a KFP cron expression."""
    from alloy_mtl.deploy import client
    from alloy_mtl.deploy.cron import validate_cron

    with _errors():
        expression = validate_cron(cron)
        plan, arguments, endpoint, kfp_client = _submission(obj, pipeline, env, host, params)
        name = job_name or f"{plan.kfp_name}-schedule"
        with _package(plan, package) as path:
            recurring_id = client.schedule(
                kfp_client,
                endpoint,
                path,
                cron=expression,
                job_name=name,
                experiment=experiment or plan.config.experiment,
                arguments=arguments,
                namespace=plan.config.namespace,
                max_concurrency=max_concurrency,
                catchup=catchup,
            )
    click.echo(f"Scheduled {name} on '{expression}': {recurring_id}")
