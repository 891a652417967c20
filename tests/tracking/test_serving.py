"""The registered champion outside this code base: served over HTTP, and loaded in a fresh process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alloy_mtl.tracking.model_logging import PYFUNC_FILE, log_bundle_model
from alloy_mtl.tracking.promotion import MODEL_URI_TAG, PIPELINE_TAG, GateSettings, run_gate
from alloy_mtl.tracking.served_code import SERVED_PREFIX, module_closure

from ..subprocesses import free_port, wait_until_answering
from .conftest import make_bundle

pytestmark = pytest.mark.slow

CHAMPION = "models:/alloy_mtl@champion"


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, isolated_mlflow: str):
    """A sqlite MLflow whose ``alloy_mtl`` champion is a tiny untrained model logged like train_all does."""
    root = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # else the champion lands in the registry an earlier test pointed at
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("alloy_mtl", artifact_location=(root / "mlartifacts").as_uri())
    parent = client.create_run(experiment, run_name="train_all", tags={PIPELINE_TAG: "train_all"}).info.run_id
    child = client.create_run(experiment, run_name="fnn", tags={MLFLOW_PARENT_RUN_ID: parent}).info.run_id
    info = log_bundle_model(make_bundle(in_chans=3, image_size=8, seed=3), child)
    client.set_tag(child, MODEL_URI_TAG, info.model_uri)
    client.log_metric(child, "test.classification.macro_ap", 0.5)
    for run_id in (child, parent):
        client.set_terminated(run_id)
    run_gate(client, GateSettings(), [experiment])
    images = np.random.default_rng(7).uniform(0.1, 0.9, (3, 3, 8, 8)).astype(np.float32)
    expected = mlflow.pyfunc.load_model(CHAMPION).predict(images)
    yield {"uri": uri, "root": Path(root), "images": images, "expected": expected}
    # they also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI: later tests' runs follow them
    mlflow.set_tracking_uri(isolated_mlflow)
    mlflow.set_registry_uri(isolated_mlflow)


def _clean_env(uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # the registry too: mlflow.set_registry_uri (the tracking tests' fixtures) exports MLFLOW_REGISTRY_URI
    return {**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}


FRESH = """
import json, sys
import numpy as np
import mlflow.pyfunc
model = mlflow.pyfunc.load_model("models:/alloy_mtl@champion")
out = model.predict(np.load(sys.argv[1]))
print(json.dumps({
    "pred": out.to_dict("list"),
    "modules": sorted(m for m in sys.modules if "alloy_mtl" in m.split(".")[0]),
    "kedro": any(m == "kedro" or m.startswith("kedro.") for m in sys.modules),
}))
"""


def test_champion_loads_in_a_fresh_process_with_only_the_code_it_declares(champion, tmp_path):
    np.save(tmp_path / "images.npy", champion["images"])
    result = subprocess.run(
        [sys.executable, "-c", FRESH, str(tmp_path / "images.npy")],
        cwd=tmp_path,
        env=_clean_env(champion["uri"]),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    packages = {m.split(".")[0] for m in answer["modules"]}
    assert len(packages) == 1 and packages.pop().startswith(SERVED_PREFIX), answer["modules"]  # not alloy_mtl
    served = answer["modules"][0]
    declared = {
        served + ("." + ".".join(p.with_suffix("").parts) if p.parts != ("__init__.py",) else "")
        for p in module_closure(PYFUNC_FILE)
    }
    declared = {m.removesuffix(".__init__") for m in declared}
    assert set(answer["modules"]) <= declared, set(answer["modules"]) - declared
    assert not answer["kedro"]
    np.testing.assert_allclose(
        answer["pred"]["thickness_mm"], champion["expected"]["thickness_mm"], rtol=1e-5
    )
    assert answer["pred"]["alloy"] == list(champion["expected"]["alloy"])


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read(), parse_constant=_not_json)


def _not_json(token: str) -> None:
    raise AssertionError(f"the served answer holds {token}, which is not JSON")


def _refusal(url: str, payload: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["message"]


def _assert_refusals(url: str, images: np.ndarray) -> None:
    """Each bad input: HTTP 400 carrying the project's own message, never MLflow's generic text or the input."""
    size = images.shape[-1]
    cases = {
        "I/I0 = -5 everywhere": (
            {"inputs": np.full_like(images, -5.0).tolist()},
            r"I/I0 outside \[-0.05, 1.25\]",
        ),
        "I/I0 x100": ({"inputs": (images * 100).tolist()}, r"I/I0 outside .*counts need params bit_depth"),
        "flat grey": (
            {"inputs": np.full((1, 3, 64, 64), 0.5).tolist()},
            r"constant image 0 .*every pixel 0.5",
        ),
        "12-bit counts, no bit_depth": (
            {"inputs": np.round(images * 4095).tolist()},
            r"look like detector counts; pass params bit_depth",
        ),
        "NaN": ({"inputs": np.where(images > 0.5, np.nan, images).tolist()}, r"NaN/inf pixel"),
        "not square": ({"inputs": images[..., : size - 2].tolist()}, r"not square"),
        "too small": ({"inputs": images[..., :2, :2].tolist()}, r"size 2x2, the model expects"),
        "one channel": ({"inputs": images[:, :1].tolist()}, r"1 channel\(s\) per image, but the model was"),
        "bad bit_depth": ({"inputs": images.tolist(), "params": {"bit_depth": "24"}}, r"bit_depth: got '24'"),
        "sets for one alloy": (
            {"inputs": images.tolist(), "params": {"conformal_sets": '{"class_quantiles": {"1050": 0.5}}'}},
            r"conformal_sets: class_quantiles: expected one threshold per class \['1050', '2017'",
        ),
    }
    for name, (payload, expected) in cases.items():
        status, message = _refusal(url, payload)
        assert status == 400, (name, status, message[:300])
        assert re.search(expected, message), (name, message[:500])
        assert message.startswith(("input:", "params")), (
            name,
            message[:300],
        )  # no input dump, no generic text


def test_served_champion_answers_a_posted_radiograph_like_the_in_process_model(champion, tmp_path):
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            "mlflow",
            "models",
            "serve",
            "-m",
            CHAMPION,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=tmp_path,
        env=_clean_env(champion["uri"]),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base}/ping", server, tmp_path / "serve.log", timeout_s=180)
        images = champion["images"]
        answer = _post(f"{base}/invocations", {"inputs": images.tolist()})["predictions"]
        expected = champion["expected"]
        assert [row["alloy"] for row in answer] == list(expected["alloy"])
        np.testing.assert_allclose([row["absorption"] for row in answer], expected["absorption"], rtol=1e-5)
        np.testing.assert_allclose([row["prob_6082"] for row in answer], expected["prob_6082"], rtol=1e-5)
        counts = np.round(images * 65535).tolist()  # 16-bit detector counts, as a lab script would send
        raw = _post(f"{base}/invocations", {"inputs": counts, "params": {"bit_depth": "16"}})["predictions"]
        np.testing.assert_allclose([row["absorption"] for row in raw], expected["absorption"], rtol=1e-3)
        alloys = [c.removeprefix("prob_") for c in expected.columns if c.startswith("prob_")]
        given = json.dumps({"class_quantiles": dict.fromkeys(alloys, 0.6), "fitted_on": "/lab/unit7"})
        params = {"conformal_sets": given}
        refit = _post(f"{base}/invocations", {"inputs": images.tolist(), "params": params})["predictions"]
        assert {row["conformal_fitted_on"] for row in refit} == {"/lab/unit7"}
        for row in refit:
            assert row["alloy_set"] == "|".join(a for a in alloys if 1 - row[f"prob_{a}"] <= 0.6)
        _assert_refusals(f"{base}/invocations", images)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
