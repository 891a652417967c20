"""Upload, run and schedule compiled pipelines on a KFP v2 API server through ``kfp.Client``.

Every failure becomes a one-line :class:`~alloy_mtl.deploy.errors.DeployError` naming the host, the
parameter or the cron expression at fault; arguments and cron are checked before any request is sent.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from alloy_mtl.deploy.cron import validate_cron
from alloy_mtl.deploy.errors import DeployError
from alloy_mtl.deploy.plan import PipelineParameter

logger = logging.getLogger(__name__)

HOST_ENV = "KFP_HOST"
HEALTHZ = "/apis/v2beta1/healthz"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def resolve_host(option: str | None, configured: str | None) -> str:
    """The KFP endpoint: ``--host``, else ``KFP_HOST``, else ``host`` in kubeflow.yml."""
    host = option or os.environ.get(HOST_ENV) or configured
    if not host:
        raise DeployError(
            [f"no KFP host: pass --host, set {HOST_ENV} or set host in conf/<env>/kubeflow.yml"]
        )
    return host.rstrip("/")


def check_reachable(host: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, when ``host`` does not answer KFP's health check.

    ``kfp.Client`` would otherwise retry for half a minute and end in a traceback.
    """
    url = f"{host}{HEALTHZ}"
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as error:
        reason = type(error).__name__
        raise DeployError([f"KFP host {host} is unreachable ({reason} on {HEALTHZ})"]) from None
    if not response.ok:
        raise DeployError([f"KFP host {host} answered HTTP {response.status_code} on {HEALTHZ}"])


def connect(host: str, namespace: str | None = None) -> Any:
    """A ``kfp.Client`` for a reachable ``host``."""
    import kfp

    check_reachable(host)
    return kfp.Client(host=host, namespace=namespace or "kubeflow")


def parse_arguments(pairs: Iterable[str], parameters: Sequence[PipelineParameter]) -> dict[str, Any]:
    """``NAME=VALUE`` overrides -> typed run arguments.

    Raises:
        DeployError: naming every malformed pair, unknown parameter and value of the wrong type.
    """
    declared = {parameter.name: parameter for parameter in parameters}
    arguments: dict[str, Any] = {}
    problems: list[str] = []
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            problems.append(f"parameter override '{pair}' is not NAME=VALUE")
        elif name not in declared:
            problems.append(f"unknown pipeline parameter '{name}'; declared: {', '.join(declared) or 'none'}")
        else:
            try:
                arguments[name] = _typed(text, declared[name].type)
            except ValueError:
                problems.append(f"pipeline parameter '{name}' is {declared[name].type}, not '{text}'")
    if problems:
        raise DeployError(problems)
    return arguments


def _typed(text: str, kind: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        if text.lower() not in _TRUE | _FALSE:
            raise ValueError(text)
        return text.lower() in _TRUE
    return text


def version_name(pipeline_name: str, package: Path) -> str:
    """Pipeline version named by content: the same YAML gives the same version."""
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
    return f"{pipeline_name}-{digest}"


def _api_call(host: str, action: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    from kfp_server_api import ApiException

    try:
        return call(*args, **kwargs)
    except ApiException as error:
        raise DeployError(
            [f"KFP host {host} refused to {action}: HTTP {error.status} {error.reason}"]
        ) from None
    except (requests.RequestException, OSError) as error:
        raise DeployError([f"KFP host {host} failed to {action}: {type(error).__name__}"]) from None


def upload(
    client: Any, host: str, package: Path, pipeline_name: str, namespace: str | None = None
) -> tuple[str, str | None]:
    """Upload ``package`` as pipeline ``pipeline_name``, or as a new version of it; return the ids."""
    pipeline_id = _api_call(host, "list pipelines", client.get_pipeline_id, pipeline_name)
    if pipeline_id is None:
        pipeline = _api_call(
            host, "upload the pipeline", client.upload_pipeline, str(package), pipeline_name, None, namespace
        )
        logger.info("Uploaded pipeline %s (%s) to %s", pipeline_name, pipeline.pipeline_id, host)
        return pipeline.pipeline_id, None
    version = _api_call(
        host,
        "upload the pipeline version",
        client.upload_pipeline_version,
        str(package),
        version_name(pipeline_name, package),
        pipeline_id=pipeline_id,
    )
    logger.info("Uploaded version %s of pipeline %s to %s", version.pipeline_version_id, pipeline_name, host)
    return pipeline_id, version.pipeline_version_id


def run(
    client: Any,
    host: str,
    package: Path,
    *,
    arguments: Mapping[str, Any],
    run_name: str,
    experiment: str,
    namespace: str | None = None,
) -> str:
    """Start one run of ``package``; return its id."""
    result = _api_call(
        host,
        "create the run",
        client.create_run_from_pipeline_package,
        str(package),
        arguments=dict(arguments),
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
    )
    logger.info("Started run %s (%s) in experiment %s on %s", run_name, result.run_id, experiment, host)
    return result.run_id


def schedule(
    client: Any,
    host: str,
    package: Path,
    *,
    cron: str,
    job_name: str,
    experiment: str,
    arguments: Mapping[str, Any],
    namespace: str | None = None,
    max_concurrency: int = 1,
    catchup: bool = False,
) -> str:
    """Create a recurring run of ``package`` on KFP's six-field ``cron``; return its id."""
    expression = validate_cron(cron)
    found = _api_call(
        host, "create the experiment", client.create_experiment, experiment, namespace=namespace
    )
    recurring = _api_call(
        host,
        "create the recurring run",
        client.create_recurring_run,
        experiment_id=found.experiment_id,
        job_name=job_name,
        cron_expression=expression,
        max_concurrency=max_concurrency,
        no_catchup=not catchup,
        params=dict(arguments),
        pipeline_package_path=str(package),
    )
    logger.info(
        "Scheduled %s on '%s' (%s) in experiment %s",
        job_name,
        expression,
        recurring.recurring_run_id,
        experiment,
    )
    return recurring.recurring_run_id
