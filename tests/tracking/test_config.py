"""Tracking URI resolution, mlflow.yml validation and the fail-fast reachability check (no MLflow needed)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from alloy_mtl.tracking.config import (
    TrackingConfigError,
    TrackingUnavailableError,
    check_reachable,
    default_artifact_location,
    parse_settings,
    resolve_tracking_uri,
)


def test_default_is_an_absolute_sqlite_file_at_the_project_root_whatever_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "project"
    uri, source = resolve_tracking_uri(project, None, environ={})
    assert uri == f"sqlite:///{project.resolve() / 'mlflow.db'}"
    assert source == "default"
    expected = (project.resolve() / "mlartifacts" / "alloy_mtl").as_uri()
    assert default_artifact_location(uri, None, project, "alloy_mtl") == expected
    assert default_artifact_location(uri, "store/art", project) == (project.resolve() / "store/art").as_uri()


def test_relative_sqlite_in_mlflow_yml_is_taken_from_the_project_root(tmp_path):
    uri, source = resolve_tracking_uri(tmp_path, "sqlite:///db/runs.db", environ={})
    assert uri == f"sqlite:///{tmp_path.resolve() / 'db/runs.db'}"
    assert "mlflow.yml" in source


def test_environment_variable_wins_over_mlflow_yml(tmp_path):
    uri, source = resolve_tracking_uri(
        tmp_path, "sqlite:///mlflow.db", environ={"MLFLOW_TRACKING_URI": "http://mlflow.lab:5000/"}
    )
    assert (uri, source) == ("http://mlflow.lab:5000", "environment variable MLFLOW_TRACKING_URI")
    assert default_artifact_location(uri, None, tmp_path) is None


@pytest.mark.parametrize(
    "uri", ["postgresql://mlflow@db.lab:5432/mlflow", "postgresql+psycopg2://db/mlflow", "mysql://db/mlflow"]
)
def test_database_uris_mlflow_supports_are_accepted_as_given(tmp_path, uri):
    assert resolve_tracking_uri(tmp_path, uri, environ={}) == (uri, "mlflow.yml server.mlflow_tracking_uri")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mlruns", r"'mlruns' is a file store"),
        ("file:///tmp/mlruns", r"file store"),
        ("postgres://db/mlflow", r"unsupported scheme 'postgres'; SQLAlchemy .* spells it postgresql://"),
        ("postgresql:///mlflow", r"has no host"),
        ("redis://db/0", r"unsupported scheme 'redis'; expected .*postgresql://"),
        ("http://", r"has no host"),
        ("sqlite:///", r"has no database path"),
    ],
)
def test_unusable_uris_are_refused_naming_them(tmp_path, uri, message):
    with pytest.raises(TrackingConfigError, match=message):
        resolve_tracking_uri(tmp_path, uri, environ={})


def test_mlflow_yml_unknown_keys_and_bad_values_are_named():
    settings = parse_settings(
        {
            "server": {"mlflow_tracking_uri": None},
            "tracking": {"experiment": {"name": "x"}, "run": {"name": "r"}},
        }
    )
    assert (settings.experiment, settings.run_name, settings.tracking_uri) == ("x", "r", None)
    with pytest.raises(TrackingConfigError, match=r"unknown key 'server.tracking_uri'"):
        parse_settings({"server": {"tracking_uri": "x"}})
    with pytest.raises(TrackingConfigError, match=r"unknown section 'ui'"):
        parse_settings({"ui": {}})
    with pytest.raises(TrackingConfigError, match=r"'tracking.enabled' must be true or false"):
        parse_settings({"tracking": {"enabled": "yes"}})
    with pytest.raises(TrackingConfigError, match=r"'tracking.disable_tracking.pipelines' must be a list"):
        parse_settings({"tracking": {"disable_tracking": {"pipelines": "inference"}}})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_fails_fast_naming_the_uri():
    uri = f"http://127.0.0.1:{_closed_port()}"
    start = time.perf_counter()
    with pytest.raises(TrackingUnavailableError, match=rf"MLflow tracking server {uri} is unreachable"):
        check_reachable(uri, timeout_s=2)
    assert time.perf_counter() - start < 5


def test_sqlite_in_a_missing_folder_fails_naming_the_uri(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    with pytest.raises(
        TrackingUnavailableError, match=r"MLflow tracking URI sqlite:///.*nowhere.* does not exist"
    ):
        check_reachable(uri)
    check_reachable(f"sqlite:///{tmp_path / 'mlflow.db'}")  # the file itself may be created later
