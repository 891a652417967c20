"""Where MLflow tracks: the settings of ``conf/<env>/mlflow.yml``, the tracking URI, and a reachability check.

The tracking URI comes from, in order: the ``MLFLOW_TRACKING_URI`` environment variable, then
``server.mlflow_tracking_uri`` in ``mlflow.yml``, then the embedded default ``sqlite:///<project>/mlflow.db``.
A relative sqlite path is resolved against the project root, never the shell's working directory
(MLflow itself resolves ``sqlite:///mlflow.db`` against the cwd). The old ``./mlruns`` file store is
refused: MLflow 3.17 keeps it in maintenance mode and refuses it by default.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
REMOTE_SCHEMES = ("http", "https")
OTHER_SCHEMES = ("databricks", "databricks-uc")
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
"""SQLAlchemy database back ends MLflow tracks to directly (``postgresql://user@host/db``, also with a driver:
``postgresql+psycopg2://``); the driver package is the user's to install."""


class TrackingConfigError(ValueError):
    """``mlflow.yml`` (or the tracking URI) is malformed; the message names the key or URI."""


class TrackingUnavailableError(RuntimeError):
    """The tracking server or database cannot be reached; the message names the URI."""


@dataclass(frozen=True)
class TrackingSettings:
    """The content of ``mlflow.yml`` (every key optional; see ``conf/base/mlflow.yml``)."""

    tracking_uri: str | None = None
    """``server.mlflow_tracking_uri``; None: ``$MLFLOW_TRACKING_URI`` or the embedded sqlite default."""
    artifact_location: str | None = None
    """``server.artifact_location`` for a new experiment; None: ``mlartifacts/`` beside a sqlite file."""
    timeout_s: float = 10.0
    """``server.timeout_s``: how long the reachability check waits for a tracking server."""
    enabled: bool = True
    """``tracking.enabled``: False runs no MLflow run at all (the URI is still set for the registry)."""
    disabled_pipelines: tuple[str, ...] = ()
    """``tracking.disable_tracking.pipelines``: pipelines that open no run (inference opens one for its drift
    report: list it here to keep it off)."""
    experiment: str = "alloy_mtl"
    """``tracking.experiment.name``."""
    run_name: str | None = None
    """``tracking.run.name``; None names the parent run after the pipeline."""


_SCHEMA: dict[str, dict[str, str]] = {
    "server": {
        "mlflow_tracking_uri": "tracking_uri",
        "artifact_location": "artifact_location",
        "timeout_s": "timeout_s",
    },
    "tracking": {"enabled": "enabled", "disable_tracking": "", "experiment": "", "run": ""},
}


def parse_settings(config: Mapping[str, Any] | None, where: str = "mlflow.yml") -> TrackingSettings:
    """Validate ``mlflow.yml`` content; unknown keys and wrong types raise naming the key.

    Raises:
        TrackingConfigError: an unknown section or key, or a value of the wrong type.
    """
    config = dict(config or {})
    values: dict[str, Any] = {}
    for section, content in config.items():
        if section not in _SCHEMA:
            raise TrackingConfigError(f"{where}: unknown section '{section}'; expected {sorted(_SCHEMA)}")
        if content is None:
            continue
        if not isinstance(content, Mapping):
            raise TrackingConfigError(f"{where}: '{section}' must be a mapping, got {type(content).__name__}")
        for key, value in content.items():
            if key not in _SCHEMA[section]:
                raise TrackingConfigError(
                    f"{where}: unknown key '{section}.{key}'; expected one of {sorted(_SCHEMA[section])}"
                )
            values.update(_parse_value(section, key, value, where))
    return TrackingSettings(**values)


def _parse_value(section: str, key: str, value: Any, where: str) -> dict[str, Any]:
    name = f"{section}.{key}"
    if key in ("mlflow_tracking_uri", "artifact_location"):
        if value is not None and not isinstance(value, str):
            raise TrackingConfigError(f"{where}: '{name}' must be a string or null, got {value!r}")
        return {_SCHEMA[section][key]: value or None}
    if key == "timeout_s":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise TrackingConfigError(f"{where}: '{name}' must be a positive number, got {value!r}")
        return {"timeout_s": float(value)}
    if key == "enabled":
        if not isinstance(value, bool):
            raise TrackingConfigError(f"{where}: '{name}' must be true or false, got {value!r}")
        return {"enabled": value}
    nested = _nested(value, name, where)
    if key == "disable_tracking":
        pipelines = nested.pop("pipelines", [])
        if not isinstance(pipelines, list) or not all(isinstance(p, str) for p in pipelines):
            raise TrackingConfigError(f"{where}: '{name}.pipelines' must be a list of pipeline names")
        _no_extra(nested, name, where)
        return {"disabled_pipelines": tuple(pipelines)}
    if key == "experiment":
        experiment = nested.pop("name", "alloy_mtl")
        if not isinstance(experiment, str) or not experiment:
            raise TrackingConfigError(f"{where}: '{name}.name' must be a non-empty string")
        _no_extra(nested, name, where)
        return {"experiment": experiment}
    run_name = nested.pop("name", None)  # key == "run"
    if run_name is not None and not isinstance(run_name, str):
        raise TrackingConfigError(f"{where}: '{name}.name' must be a string or null")
    _no_extra(nested, name, where)
    return {"run_name": run_name}


def _nested(value: Any, name: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TrackingConfigError(f"{where}: '{name}' must be a mapping, got {value!r}")
    return dict(value)


def _no_extra(rest: Mapping[str, Any], name: str, where: str) -> None:
    if rest:
        raise TrackingConfigError(f"{where}: unknown key(s) {sorted(rest)} under '{name}'")


def resolve_tracking_uri(
    project_path: str | Path, configured: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The tracking URI to use and where it came from (``environment``, ``mlflow.yml`` or ``default``).

    A relative sqlite path is made absolute from ``project_path``.

    Raises:
        TrackingConfigError: the URI has an unsupported scheme or is the refused file store.
    """
    environ = os.environ if environ is None else environ
    if environ.get("MLFLOW_TRACKING_URI"):
        uri, source = environ["MLFLOW_TRACKING_URI"], "environment variable MLFLOW_TRACKING_URI"
    elif configured:
        uri, source = configured, "mlflow.yml server.mlflow_tracking_uri"
    else:
        return f"sqlite:///{(Path(project_path) / DEFAULT_DB).resolve()}", "default"
    return absolute_uri(uri, project_path, source), source


def absolute_uri(uri: str, project_path: str | Path, source: str = "tracking URI") -> str:
    """``uri`` with a relative sqlite path made absolute from ``project_path``; other schemes checked only."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None:
            raise TrackingConfigError(
                f"{source}: '{uri}' has no database path; expected sqlite:///path/to/db"
            )
        if not path.is_absolute():
            path = (Path(project_path) / path).resolve()
        return f"sqlite:///{path}"
    if scheme in REMOTE_SCHEMES:
        if not urlparse(uri).netloc:
            raise TrackingConfigError(f"{source}: '{uri}' has no host; expected http(s)://host:port")
        return uri.rstrip("/")
    if scheme in OTHER_SCHEMES:
        return uri
    if scheme.partition("+")[0] in DATABASE_SCHEMES:
        if not urlparse(uri).netloc:
            raise TrackingConfigError(
                f"{source}: '{uri}' has no host; expected {scheme}://user@host:port/database"
            )
        return uri
    if scheme == "postgres":
        raise TrackingConfigError(
            f"{source}: '{uri}' has an unsupported scheme 'postgres'; SQLAlchemy (and so MLflow) spells it "
            "postgresql://user@host:port/database"
        )
    if scheme in ("", "file"):
        raise TrackingConfigError(
            f"{source}: '{uri}' is a file store (./mlruns), which MLflow 3.17 refuses by default; use "
            "sqlite:///mlflow.db (embedded) or http(s)://host:port (a tracking server)"
        )
    raise TrackingConfigError(
        f"{source}: '{uri}' has an unsupported scheme '{scheme}'; expected sqlite:///path, http(s)://host:port, "
        f"a database ({', '.join(f'{d}://' for d in DATABASE_SCHEMES)}) or one of {list(OTHER_SCHEMES)}"
    )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute), or None for another scheme."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :]
    return Path(rest) if rest else None


def default_artifact_location(
    uri: str, configured: str | None, project_path: str | Path, experiment: str = "alloy_mtl"
) -> str | None:
    """Artifact root for a new experiment: the configured one (relative paths from the project root), else
    ``mlartifacts/<experiment>/`` beside a sqlite database, else None (a tracking server chooses its own)."""
    if configured:
        if "://" in configured:
            return configured
        path = Path(configured)
        return (path if path.is_absolute() else (Path(project_path) / path).resolve()).as_uri()
    db = sqlite_path(uri)
    if db is not None:
        return (db.parent / DEFAULT_ARTIFACTS / experiment).as_uri()
    return None


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast when the tracking backend cannot be used, naming the URI.

    sqlite: the database's folder must exist and be writable (the file itself is created on first use).
    http(s): the server's ``/health`` endpoint must answer within ``timeout_s``.

    Raises:
        TrackingUnavailableError: naming the URI and what failed.
    """
    db = sqlite_path(uri)
    if db is not None:
        folder = db.parent
        if not folder.is_dir():
            raise TrackingUnavailableError(f"MLflow tracking URI {uri}: folder {folder} does not exist")
        if db.exists() and not os.access(db, os.R_OK | os.W_OK):
            raise TrackingUnavailableError(f"MLflow tracking URI {uri}: {db} is not readable and writable")
        if not db.exists() and not os.access(folder, os.W_OK):
            raise TrackingUnavailableError(f"MLflow tracking URI {uri}: folder {folder} is not writable")
        return
    if urlparse(uri).scheme in REMOTE_SCHEMES:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=timeout_s) as response:  # noqa: S310
                status = response.status
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TrackingUnavailableError(
                f"MLflow tracking server {uri} is unreachable ({type(exc).__name__}: {exc}); start it or set "
                "MLFLOW_TRACKING_URI / conf/<env>/mlflow.yml server.mlflow_tracking_uri"
            ) from exc
        if status != 200:
            raise TrackingUnavailableError(f"MLflow tracking server {uri}: /health answered HTTP {status}")
