"""upload, run and schedule against a fake KFP v2 REST API on 127.0.0.1, checking what it receives."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from alloy_mtl.cli import cli
from alloy_mtl.deploy import client
from alloy_mtl.deploy.errors import DeployError
from alloy_mtl.deploy.plan import PipelineParameter
from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "pipelines" / "train_all.yaml"
NAME = "alloy-mtl-train-all"
PARAMETERS = (
    PipelineParameter("epochs", "training.epochs", "int", 10),
    PipelineParameter("data_source_path", "data_source.path", "str", ""),
)


@pytest.fixture
def kfp_client(fake_kfp):
    return client.connect(fake_kfp.url)


def test_upload_creates_the_pipeline_then_adds_versions(fake_kfp, kfp_client):
    assert client.upload(kfp_client, fake_kfp.url, PACKAGE, NAME) == ("pipeline-new", None)
    (upload,) = fake_kfp.calls("POST", "/pipelines/upload")
    assert upload.query["name"] == [NAME]
    assert b"# PIPELINE DEFINITION" in upload.body and b"alloy_mtl.deploy.step" in upload.body

    fake_kfp.pipelines[NAME] = "pipeline-7"
    assert client.upload(kfp_client, fake_kfp.url, PACKAGE, NAME) == ("pipeline-7", "version-new")
    (version,) = fake_kfp.calls("POST", "/pipelines/upload_version")
    assert version.query["pipelineid"] == ["pipeline-7"]
    assert version.query["name"] == [client.version_name(NAME, PACKAGE)]  # named by content


def test_run_files_one_run_with_typed_overrides_in_a_new_experiment(fake_kfp, kfp_client):
    arguments = client.parse_arguments(["epochs=2", "data_source_path=/lab/x"], PARAMETERS)
    run_id = client.run(
        kfp_client, fake_kfp.url, PACKAGE, arguments=arguments, run_name="try-1", experiment="alloy-mtl"
    )
    assert run_id == "run-new"
    (experiment,) = fake_kfp.calls("POST", "/experiments")
    assert experiment.json()["display_name"] == "alloy-mtl"
    (run,) = fake_kfp.calls("POST", "/runs")
    body = run.json()
    assert body["display_name"] == "try-1" and body["experiment_id"] == "experiment-new"
    assert body["runtime_config"]["parameters"] == {"epochs": 2, "data_source_path": "/lab/x"}
    # the pipeline and its Kubernetes platform spec (volume, GPUs, secrets) travel together
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == NAME
    assert "kubernetes" in body["pipeline_spec"]["platform_spec"]["platforms"]


def test_schedule_creates_a_recurring_run_one_at_a_time_without_catch_up(fake_kfp, kfp_client):
    fake_kfp.experiments["alloy-mtl"] = "experiment-3"
    recurring = client.schedule(
        kfp_client,
        fake_kfp.url,
        PACKAGE,
        cron="0 0 3 * * *",
        job_name="nightly",
        experiment="alloy-mtl",
        arguments={"epochs": 5},
    )
    assert recurring == "recurring-new"
    assert fake_kfp.calls("POST", "/experiments") == []  # the existing experiment is reused
    (request,) = fake_kfp.calls("POST", "/recurringruns")
    body = request.json()
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert int(body["max_concurrency"]) == 1 and body["no_catchup"] is True and body["mode"] == "ENABLE"
    assert (body["experiment_id"], body["display_name"]) == ("experiment-3", "nightly")
    assert body["runtime_config"]["parameters"] == {"epochs": 5}


def test_a_malformed_cron_fails_before_any_request(fake_kfp, kfp_client):
    sent = len(fake_kfp.requests)
    with pytest.raises(DeployError, match=r"cron expression '0 3 \* \* \*' has 5 fields"):
        client.schedule(
            kfp_client, fake_kfp.url, PACKAGE, cron="0 3 * * *", job_name="n", experiment="e", arguments={}
        )
    assert len(fake_kfp.requests) == sent


def test_an_unreachable_host_is_one_line_naming_it():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    with pytest.raises(DeployError) as error:
        client.connect(host)
    assert str(error.value) == f"KFP host {host} is unreachable (ConnectionError on /apis/v2beta1/healthz)"


def test_host_comes_from_the_option_then_kfp_host_then_config(monkeypatch):
    monkeypatch.setenv("KFP_HOST", "http://env:8888/")
    assert client.resolve_host("http://option", "http://config") == "http://option"
    assert client.resolve_host(None, "http://config") == "http://env:8888"
    monkeypatch.delenv("KFP_HOST")
    assert client.resolve_host(None, "http://config") == "http://config"
    with pytest.raises(DeployError, match="no KFP host"):
        client.resolve_host(None, None)


def test_bad_overrides_are_all_named():
    with pytest.raises(DeployError) as error:
        client.parse_arguments(["epochs=many", "lr=0.1", "seed"], PARAMETERS)
    assert error.value.problems == [
        "pipeline parameter 'epochs' is int, not 'many'",
        "unknown pipeline parameter 'lr'; declared: epochs, data_source_path",
        "parameter override 'seed' is not NAME=VALUE",
    ]


def test_cli_refuses_a_malformed_cron_in_one_line():
    result = CliRunner().invoke(
        cli, ["kubeflow", "schedule", "--cron", "0 3 * * *"], obj=SimpleNamespace(project_path=REPO_ROOT)
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: cron expression '0 3 * * *' has 5 fields")
    assert len(result.output.strip().splitlines()) == 1


def test_cli_run_sends_the_compiled_pipeline_with_overrides(fake_kfp):
    result = CliRunner().invoke(
        cli,
        [
            "kubeflow",
            "run",
            "--host",
            fake_kfp.url,
            "--package",
            str(PACKAGE),
            "--param",
            "epochs=1",
            "--run-name",
            "smoke",
        ],
        obj=SimpleNamespace(project_path=REPO_ROOT),
    )
    assert result.exit_code == 0, result.output
    assert "Started run smoke: run-new" in result.output
    (run,) = fake_kfp.calls("POST", "/runs")
    assert run.json()["runtime_config"]["parameters"] == {"epochs": 1}


def test_cli_unknown_pipeline_is_one_line():
    result = CliRunner().invoke(
        cli, ["kubeflow", "compile", "--pipeline", "nope"], obj=SimpleNamespace(project_path=REPO_ROOT)
    )
    assert result.exit_code == 1
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error.startswith("Error: unknown pipeline 'nope'; registered pipelines: ") and "train_all" in error


def test_a_token_and_ca_bundle_reach_every_request_and_bad_ones_are_named(fake_kfp, tmp_path):
    from alloy_mtl.deploy.config import ClientConfig

    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = client.client_settings(ClientConfig(token_file=str(token_file), ca_bundle=str(ca)), environ={})
    assert (settings.token, settings.ca_bundle) == ("s3cret", str(ca))
    assert (
        client.client_settings(ClientConfig(token_file=str(token_file)), {"KFP_TOKEN": "env"}).token == "env"
    )
    kfp_client = client.connect(fake_kfp.url, settings=client.ClientSettings(token="s3cret"))
    client.upload(kfp_client, fake_kfp.url, PACKAGE, NAME)
    assert fake_kfp.requests and all(
        r.headers.get("authorization") == "Bearer s3cret" for r in fake_kfp.requests
    )
    (tmp_path / "empty").write_text("")
    with pytest.raises(DeployError) as err:
        client.client_settings(
            ClientConfig(ca_bundle=str(tmp_path / "missing.pem")), {"KFP_TOKEN_FILE": str(tmp_path / "empty")}
        )
    assert (
        "token file" in str(err.value)
        and "is empty" in str(err.value)
        and "missing.pem is not a file" in str(err.value)
    )


def test_refused_credentials_name_the_fix(fake_kfp):
    fake_kfp.failures[("GET", "/healthz")] = [401]
    with pytest.raises(DeployError, match=r"refused the credentials \(HTTP 401.*set KFP_TOKEN"):
        client.connect(fake_kfp.url)


def test_transient_503s_are_retried_and_a_slow_answer_times_out_naming_the_action(fake_kfp):
    fake_kfp.failures[("GET", "/healthz")] = [503, 503]
    fake_kfp.failures[("GET", "/pipelines")] = [503]
    settings = client.ClientSettings(timeout_s=1.0, retries=3)
    kfp_client = client.connect(fake_kfp.url, settings=settings)
    assert client.upload(kfp_client, fake_kfp.url, PACKAGE, NAME) == ("pipeline-new", None)
    # our health check answered on its third try (kfp.Client then asks once more itself)
    assert len(fake_kfp.calls("GET", "/healthz")) >= 3 and len(fake_kfp.calls("GET", "/pipelines")) == 2
    fake_kfp.delay_s[("GET", "/pipelines")] = 3.0
    slow = client.connect(fake_kfp.url, settings=client.ClientSettings(timeout_s=0.5, retries=0))
    with pytest.raises(DeployError, match=r"failed to list pipelines: \w+"):
        client.upload(slow, fake_kfp.url, PACKAGE, NAME)
