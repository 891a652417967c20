"""Artifacts written before ``alloy_mtl.mtl`` became sub-packages still load and resume with today's code.

The fixtures under ``tests/fixtures/pre_move/`` were written by commit 9799da9 (see its ``make_fixtures.py``):
a model bundle, a training checkpoint folder and a logged MLflow model that carries the old flat modules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

import alloy_mtl
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.checkpoint_io import LAST_CHECKPOINT, load_checkpoint
from alloy_mtl.tracking.pyfunc_model import predict_frame

from ..subprocesses import child_env

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pre_move"


def _data() -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    with np.load(FIXTURES / "data.npz") as stored:
        columns = {k: stored[k] for k in stored.files if k not in ("images", "probes")}
        return stored["images"], pd.DataFrame(columns), stored["probes"]


def _params() -> dict[str, Any]:
    return json.loads((FIXTURES / "params.json").read_text())


def _expected(prefix: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as stored:
        return {k.split(".", 1)[1]: stored[k] for k in stored.files if k.startswith(f"{prefix}.")}


def _outputs(bundle: dict[str, Any], probes: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        predicted = load_model(bundle).predict(torch.from_numpy(probes))
    return {name: value.float().numpy() for name, value in predicted.items()}


def _bundle() -> dict[str, Any]:
    return torch.load(FIXTURES / "bundle.pt", map_location="cpu", weights_only=True)


def _check_frame(frame: pd.DataFrame) -> None:
    recorded = pd.DataFrame(json.loads((FIXTURES / "expected_frame.json").read_text()))
    # today's predict_frame on a bundle older than the unknown-material score answers what it did, with the
    # score's columns empty; the old logged model's own code has no such columns
    added = ["ood_score", "ood_threshold", "unknown_reason", "alloy_set", "alloy_set_size"]
    added += [f"{target}_{end}" for target in ("thickness_mm", "absorption") for end in ("low", "high")]
    added += ["conformal_fitted_on"]
    if "ood_score" in frame:
        assert list(frame.columns) == [*recorded.columns, *added]
        assert frame[["ood_score", "ood_threshold", *added[5:-1]]].isna().all().all()
        assert (frame["unknown_reason"] == "").all() and (frame["alloy_set"] == "").all()
        assert (frame["conformal_fitted_on"] == "").all()  # no sets
        assert (frame["alloy_set_size"] == -1).all()
        frame = frame.drop(columns=added)
    assert list(frame.columns) == list(recorded.columns)
    assert frame["alloy"].tolist() == recorded["alloy"].tolist()
    np.testing.assert_allclose(
        frame.drop(columns="alloy").to_numpy(), recorded.drop(columns="alloy").to_numpy(), rtol=1e-6
    )


def test_pre_move_task_dicts_still_parse_to_the_same_tasks():
    tasks = {t.name: t for t in parse_tasks(_bundle()["tasks"])}
    assert list(tasks) == ["alloy", "thickness", "absorption"]
    assert tasks["alloy"].is_classification and tasks["alloy"].classes == (
        "1050",
        "2017",
        "5083",
        "6082",
        "7075",
    )
    assert tasks["alloy"].loss == "logit_adjusted" and tasks["alloy"].loss_params["tau"] == 0.5
    assert tasks["thickness"].weight == 2.0 and tasks["thickness"].lds is not None
    assert (tasks["thickness"].lds.bins, tasks["thickness"].lds.reweight) == (6, "inv")
    assert tasks["absorption"].fds is not None and tasks["absorption"].fds.bins == 6
    assert tasks["absorption"].loss == "huber" and tasks["absorption"].lds is None
    params = parse_training_params(_params())  # the disabled task with them
    assert [t.name for t in params.task_specs] == list(tasks)


def test_pre_move_bundle_rebuilds_a_model_that_predicts_what_it_did():
    bundle = _bundle()
    _, _, probes = _data()
    outputs = _outputs(bundle, probes)
    expected = _expected("bundle")
    assert set(outputs) == set(expected) == {"alloy", "thickness", "absorption"}
    for name, values in expected.items():
        np.testing.assert_allclose(outputs[name], values, rtol=1e-6, atol=1e-7, err_msg=name)
    _check_frame(predict_frame(load_model(bundle), bundle, probes))  # what the old pyfunc answered


def test_pre_move_checkpoint_resumes_to_what_the_old_code_trained(tmp_path):
    images, metadata, probes = _data()
    checkpoint = shutil.copytree(FIXTURES / "checkpoint", tmp_path / "checkpoint")
    saved = load_checkpoint(checkpoint / LAST_CHECKPOINT)
    # resume=True refuses a checkpoint whose fingerprint differs instead of setting it aside
    # calibration (fitted after training, outside the checkpoint) is off: the old code had none
    resumed = {"epochs": 2, "resume": True, "calibration": "none"}
    result = train_from_params(images, metadata, _params() | resumed, checkpoint)
    assert result.summary["epochs_trained"] == 2
    assert result.history["train_loss"].iloc[0] == pytest.approx(saved["history"][0]["train_loss"], rel=1e-12)
    assert load_checkpoint(checkpoint / LAST_CHECKPOINT)["fingerprint"] == saved["fingerprint"]
    outputs = _outputs(result.bundle, probes)
    for name, values in _expected("resumed").items():
        np.testing.assert_allclose(outputs[name], values, rtol=1e-5, atol=1e-6, err_msg=name)


def test_pre_move_logged_model_loads_where_alloy_mtl_is_imported_through_the_old_paths(tmp_path, monkeypatch):
    folder = shutil.copytree(FIXTURES / "logged_model", tmp_path / "model")  # nothing written into the repo
    monkeypatch.setattr(sys, "path", list(sys.path))  # MLflow puts the model's code/ first; undone after
    _, _, probes = _data()
    model = mlflow.pyfunc.load_model(str(folder))
    _check_frame(model.predict(probes))
    # its `from alloy_mtl.mtl.model import load_model` was today's module: nothing came from the model's copy
    assert sys.modules["alloy_mtl.mtl.model"] is sys.modules["alloy_mtl.mtl.models.multitask"]
    package = Path(alloy_mtl.__file__).parent
    loaded = [m for name, m in sys.modules.items() if name.split(".")[0] == "alloy_mtl"]
    assert all(package in Path(m.__file__).parents for m in loaded if getattr(m, "__file__", None))


FRESH = """
import json, sys
import numpy as np
import mlflow.pyfunc
frame = mlflow.pyfunc.load_model(sys.argv[1]).predict(np.load(sys.argv[2]))
print(json.dumps(frame.to_dict("list")))
"""


@pytest.mark.slow  # a fresh Python importing torch and MLflow
def test_pre_move_logged_model_loads_and_predicts_in_a_fresh_process(tmp_path):
    folder = shutil.copytree(FIXTURES / "logged_model", tmp_path / "model")
    _, _, probes = _data()
    np.save(tmp_path / "probes.npy", probes)
    done = subprocess.run(
        [sys.executable, "-c", FRESH, str(folder), str(tmp_path / "probes.npy")],
        cwd=tmp_path,
        env={**child_env(), "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _check_frame(pd.DataFrame(json.loads(done.stdout.strip().splitlines()[-1])))
