"""The logged model's code is a private copy: it never shadows the installed ``alloy_mtl`` of the caller."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import alloy_mtl
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.tracking.model_logging import PYFUNC_FILE, log_bundle_model
from alloy_mtl.tracking.pyfunc_model import predict_frame
from alloy_mtl.tracking.served_code import (
    SERVED_PREFIX,
    module_closure,
    package_imports,
    rename_package_imports,
    vendor_model_code,
)

from ..subprocesses import child_env

SOURCE = '''"""Uses alloy_mtl.mtl.tasks (a docstring)."""
import os
import alloy_mtl.mtl.tasks as tasks
from alloy_mtl.mtl.models.multitask import (  # alloy_mtl in a comment
    build_model,
    load_model,
)
from . import sibling
from alloy_mtl import constants; from alloy_mtl_other import thing
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alloy_mtl.mtl.training.trainer import Trainer

NAME = "alloy_mtl.mtl.model"
alloy_mtl_count = 1
'''


def test_only_import_statements_of_the_package_are_renamed():
    renamed = rename_package_imports(SOURCE, "alloy_mtl", "_served")
    assert package_imports(renamed) == []
    assert sorted(package_imports(renamed, "_served")) == [
        "_served",
        "_served.mtl.models.multitask",
        "_served.mtl.tasks",
        "_served.mtl.training.trainer",
    ]
    assert renamed.splitlines()[:4] == [
        '"""Uses alloy_mtl.mtl.tasks (a docstring)."""',
        "import os",
        "import _served.mtl.tasks as tasks",
        "from _served.mtl.models.multitask import (  # alloy_mtl in a comment",
    ]
    assert "from _served import constants; from alloy_mtl_other import thing" in renamed
    assert 'NAME = "alloy_mtl.mtl.model"' in renamed and "alloy_mtl_count = 1" in renamed
    assert "from . import sibling" in renamed
    assert len(renamed.splitlines()) == len(SOURCE.splitlines())  # tracebacks keep their line numbers


def test_an_import_that_binds_the_package_name_is_refused_naming_the_file():
    with pytest.raises(ValueError, match=r"x\.py:2: `import alloy_mtl\.physics` binds the name alloy_mtl"):
        rename_package_imports("import os\nimport alloy_mtl.physics\n", "alloy_mtl", "_served", "x.py")


def test_vendored_code_is_the_import_closure_under_a_private_name_with_no_alloy_mtl_import(tmp_path):
    code = vendor_model_code(PYFUNC_FILE, tmp_path / "a")
    assert re.fullmatch(SERVED_PREFIX + "[0-9a-f]{12}", code.package)
    assert [p.name for p in code.folder.iterdir()] == [code.package]  # nothing else lands on sys.path
    root = code.folder / code.package
    files = sorted(p.relative_to(root) for p in root.rglob("*.py"))
    assert files == module_closure(PYFUNC_FILE)
    import_line = re.compile(r"^\s*(from|import)\s+alloy_mtl\b", re.MULTILINE)
    for path in [code.model_file, *root.rglob("*.py")]:
        text = path.read_text()
        assert not import_line.search(text), path
        assert package_imports(text) == [], path
    assert re.search(
        rf"^from {code.package}\.mtl\.models\.multitask import load_model$",
        code.model_file.read_text(),
        re.MULTILINE,
    )
    # strings are kept: the alias finder maps its "alloy_mtl.mtl.<old>" table to the package it is installed in
    assert '"alloy_mtl.mtl.' in (root / "mtl" / "_moved.py").read_text()
    # the name follows the code: the same sources give the same name
    assert vendor_model_code(PYFUNC_FILE, tmp_path / "b").package == code.package


FRESH = """
import json, sys
import numpy as np
if sys.argv[2] == "import_then_load":
    import alloy_mtl
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
before = sorted(m for m in sys.modules if m.split(".")[0] == "alloy_mtl")
frame = model.predict(np.load(sys.argv[3]))
import alloy_mtl.physics
import alloy_mtl.mtl.models.multitask
served = sorted(m for m in sys.modules if m.startswith("_alloy_mtl_served_"))
print(json.dumps({
    "pred": frame.drop(columns=["alloy", "unknown_reason", "alloy_set", "conformal_fitted_on"]).astype(float).to_numpy().tolist(),
    "alloy": frame["alloy"].tolist(),
    "package": alloy_mtl.__file__,
    "before": before,
    "served": served,
    "served_file": sys.modules[served[0]].__file__ if served else None,
}))
"""


@pytest.mark.slow  # two fresh Pythons importing torch and MLflow
def test_after_loading_the_model_every_alloy_mtl_module_imports_from_the_installed_package(
    mlflow_backend, bundle_factory, tmp_path
):
    bundle = bundle_factory(in_chans=3, image_size=8, seed=5)
    run = mlflow_backend["client"].create_run(mlflow_backend["experiment_id"], run_name="fnn")
    paths, modules = list(sys.path), set(sys.modules)
    info = log_bundle_model(bundle, run.info.run_id)
    # logging ran the rewritten model file; it leaves neither code folders nor the served modules behind
    assert sys.path == paths
    assert not any(m.startswith(SERVED_PREFIX) for m in set(sys.modules) - modules)

    images = np.random.default_rng(1).uniform(0.2, 0.9, (3, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    env = {**child_env(), "MLFLOW_TRACKING_URI": mlflow_backend["uri"], "MLFLOW_DISABLE_TELEMETRY": "true"}
    orders = ("load_then_import", "import_then_load")
    children = {  # fresh processes, so that sys.modules holds only what the order imported
        order: subprocess.Popen(
            [sys.executable, "-c", FRESH, info.model_uri, order, str(tmp_path / "images.npy")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order in orders
    }
    expected = predict_frame(load_model(bundle), bundle, images)
    for order, child in children.items():
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, f"{order}: {err[-3000:]}"
        answer = json.loads(out.strip().splitlines()[-1])
        assert os.path.samefile(answer["package"], alloy_mtl.__file__), order
        assert answer["before"] == ([] if order == "load_then_import" else ["alloy_mtl"]), order
        assert answer["served"] and f"/code/{answer['served'][0]}/" in answer["served_file"], order
        numbers = expected.drop(
            columns=["alloy", "unknown_reason", "alloy_set", "conformal_fitted_on"]
        ).to_numpy(np.float64)
        np.testing.assert_allclose(np.asarray(answer["pred"], np.float64), numbers, rtol=1e-5)
        assert answer["alloy"] == expected["alloy"].tolist(), order
