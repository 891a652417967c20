"""Upload, run and schedule compiled pipelines on a KFP v2 API server through ``kfp.Client``.

Every failure becomes a one-line :class:`~alloy_mtl.deploy.errors.DeployError` naming the host, the
parameter or the cron expression at fault; arguments and cron are checked before any request is sent.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from alloy_mtl.deploy.config import ClientConfig
from alloy_mtl.deploy.cron import validate_cron
from alloy_mtl.deploy.errors import DeployError
from alloy_mtl.deploy.plan import PipelineParameter

logger = logging.getLogger(__name__)

HOST_ENV = "KFP_HOST"
TOKEN_ENV = "KFP_TOKEN"
TOKEN_FILE_ENV = "KFP_TOKEN_FILE"
CA_BUNDLE_ENV = "KFP_CA_BUNDLE"
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


@dataclass(frozen=True)
class ClientSettings:
    """What a request to the KFP API carries: the bearer token, the CA bundle, the timeout and the retries."""

    token: str | None = None
    ca_bundle: str | None = None
    timeout_s: float = 30.0
    retries: int = 3

    def retry(self) -> Retry:
        """Retries of failed connections and of 502/503/504 answers to reading requests (urllib3 never repeats a
        POST on a status), with exponential backoff."""
        return Retry(
            total=self.retries, backoff_factor=0.5, status_forcelist=(502, 503, 504), raise_on_status=False
        )


def client_settings(
    config: ClientConfig | None = None, environ: Mapping[str, str] | None = None
) -> ClientSettings:
    """The token (``KFP_TOKEN``, else the file ``KFP_TOKEN_FILE`` or ``client.token_file`` names), the CA bundle
    (``KFP_CA_BUNDLE``, else ``client.ca_bundle``), timeout and retries of ``conf/<env>/kubeflow.yml``.

    Raises:
        DeployError: naming a token file or CA bundle that cannot be read, or an empty token file.
    """
    config = config or ClientConfig()
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    token = environ.get(TOKEN_ENV) or None
    token_file = environ.get(TOKEN_FILE_ENV) or config.token_file
    if token is None and token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text().strip() or None
        except OSError as error:
            problems.append(f"KFP token file {path} cannot be read ({type(error).__name__})")
        else:
            if token is None:
                problems.append(f"KFP token file {path} is empty")
    ca_bundle = environ.get(CA_BUNDLE_ENV) or config.ca_bundle
    if ca_bundle and not Path(ca_bundle).expanduser().is_file():
        problems.append(f"KFP CA bundle {ca_bundle} is not a file (KFP_CA_BUNDLE or client.ca_bundle)")
    if problems:
        raise DeployError(problems)
    return ClientSettings(
        token=token,
        ca_bundle=str(Path(ca_bundle).expanduser()) if ca_bundle else None,
        timeout_s=config.timeout_s,
        retries=config.retries,
    )


def check_reachable(host: str, settings: ClientSettings | None = None) -> None:
    """Fail fast, in one line, when ``host`` does not answer KFP's health check (retried as ``settings`` say).

    ``kfp.Client`` would otherwise retry for half a minute and end in a traceback.
    """
    settings = settings or ClientSettings(timeout_s=5.0, retries=0)
    url = f"{host}{HEALTHZ}"
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=settings.retry()))
    session.mount("https://", HTTPAdapter(max_retries=settings.retry()))
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    try:
        response = session.get(
            url, timeout=settings.timeout_s, headers=headers, verify=settings.ca_bundle or True
        )
    except requests.RequestException as error:
        reason = type(error).__name__
        raise DeployError([f"KFP host {host} is unreachable ({reason} on {HEALTHZ})"]) from None
    if response.status_code in (401, 403):
        raise DeployError(
            [
                f"KFP host {host} refused the credentials (HTTP {response.status_code} on {HEALTHZ}): set "
                f"{TOKEN_ENV}, or {TOKEN_FILE_ENV} / client.token_file to a file holding a valid token"
            ]
        )
    if not response.ok:
        raise DeployError([f"KFP host {host} answered HTTP {response.status_code} on {HEALTHZ}"])


def connect(host: str, namespace: str | None = None, settings: ClientSettings | None = None) -> Any:
    """A ``kfp.Client`` for a reachable ``host`` whose every request carries ``settings``' token and CA bundle,
    times out after ``settings.timeout_s`` and is retried as :meth:`ClientSettings.retry` says."""
    import kfp

    settings = settings or ClientSettings()
    check_reachable(host, settings)
    kfp_client = kfp.Client(
        host=host,
        namespace=namespace or "kubeflow",
        existing_token=settings.token,
        ssl_ca_cert=settings.ca_bundle,
    )
    # kfp.Client takes no timeout or retries: its generated API client's one REST client gets them (a request
    # passes timeout None, which would override a pool default, so the default timeout goes in per request)
    rest = kfp_client._run_api.api_client.rest_client
    rest.pool_manager.connection_pool_kw["retries"] = settings.retry()
    rest.pool_manager.clear()
    send = rest.request
    timeout = (settings.timeout_s, settings.timeout_s)  # (connect, read); the client ignores a float

    def request(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return send(*args, _request_timeout=_request_timeout or timeout, **kwargs)

    rest.request = request
    return kfp_client


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
    import urllib3
    from kfp_server_api import ApiException

    try:
        return call(*args, **kwargs)
    except ApiException as error:
        raise DeployError(
            [f"KFP host {host} refused to {action}: HTTP {error.status} {error.reason}"]
        ) from None
    except (requests.RequestException, OSError, urllib3.exceptions.HTTPError) as error:
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
