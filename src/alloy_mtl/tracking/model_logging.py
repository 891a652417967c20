"""Log a trained model bundle as the alloy-mtl pyfunc (models-from-code), with signature and input example.

The logged model holds: ``python_model`` = :mod:`alloy_mtl.tracking.pyfunc_model` (the file, not a pickle);
``artifacts/bundle.pt`` (tensors and plain values only, read with ``weights_only=True``); ``code/alloy_mtl``:
the modules the pyfunc imports, found by following its ``alloy_mtl`` imports (nothing of the trainer, the
data layer, Kedro or the pipelines); pinned pip requirements (no requirement inference, which would load
the model in a subprocess).
"""

from __future__ import annotations

import ast
import importlib.metadata
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

import alloy_mtl
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.tracking import pyfunc_model

logger = logging.getLogger(__name__)

PACKAGE = "alloy_mtl"
PACKAGE_DIR = Path(alloy_mtl.__file__).resolve().parent
PYFUNC_FILE = Path(pyfunc_model.__file__).resolve()
REQUIREMENTS = ("mlflow", "torch", "timm", "numpy", "pandas", "scipy")


def module_closure(entry: Path, package_dir: Path = PACKAGE_DIR, package: str = PACKAGE) -> list[Path]:
    """Source files of ``package`` that ``entry`` imports, directly or through each other (static, via
    the AST), plus the ``__init__.py`` of every package on their way. Sorted, relative to ``package_dir``.

    Raises:
        FileNotFoundError: an imported ``package`` module has no source file.
    """
    found: set[Path] = set()
    pending = [entry.resolve()]
    while pending:
        source = pending.pop()
        for module in _imported_modules(source, package_dir, package):
            path = _module_file(module, package_dir, package)
            for init in _package_inits(path, package_dir):
                if init not in found:
                    found.add(init)
                    pending.append(init)
            if path not in found:
                found.add(path)
                pending.append(path)
    found.add(package_dir / "__init__.py")
    return sorted(p.relative_to(package_dir) for p in found)


def _imported_modules(source: Path, package_dir: Path, package: str) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    here = _module_name(source, package_dir, package)
    modules: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if a.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and here is not None:
                parts = here.split(".") if source.name == "__init__.py" else here.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            if base.split(".")[0] != package:
                continue
            modules.add(base)
            modules.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in modules if _module_file(m, package_dir, package, missing_ok=True) is not None}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (imports for type hints only)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_name(source: Path, package_dir: Path, package: str) -> str | None:
    try:
        relative = source.resolve().relative_to(package_dir)
    except ValueError:
        return None
    parts = [package, *relative.with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_file(module: str, package_dir: Path, package: str, missing_ok: bool = False) -> Path | None:
    parts = module.split(".")[1:]
    candidates = [
        package_dir.joinpath(*parts).with_suffix(".py"),
        package_dir.joinpath(*parts, "__init__.py"),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    if missing_ok:
        return None
    raise FileNotFoundError(f"module {module} has no source file under {package_dir}")


def _package_inits(path: Path, package_dir: Path) -> list[Path]:
    inits = []
    folder = path.parent
    while folder != package_dir.parent and package_dir in (folder, *folder.parents):
        inits.append((folder / "__init__.py").resolve())
        folder = folder.parent
    return inits


def package_model_code(destination: Path) -> Path:
    """Copy the modules the pyfunc needs into ``destination/alloy_mtl`` and return that folder."""
    target = destination / PACKAGE
    for relative in module_closure(PYFUNC_FILE):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE_DIR / relative, target / relative)
    return target


def pinned_requirements() -> list[str]:
    """``name==version`` of the packages the pyfunc imports, from this environment."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def model_signature(bundle: Mapping[str, Any], example: np.ndarray, output: Any) -> ModelSignature:
    """Tensor input ``float32 (-1, C, -1, -1)`` (any batch and image size), the output columns, the params."""
    inferred = infer_signature(example, output, params=dict(pyfunc_model.DEFAULT_PARAMS))
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, int(bundle["in_chans"]), -1, -1))])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def example_input(bundle: Mapping[str, Any]) -> np.ndarray:
    """One flat-field radiograph of the model's training size at I/I0 = 0.5."""
    size = int(bundle["image_size"])
    return np.full((1, int(bundle["in_chans"]), size, size), 0.5, dtype=np.float32)


def log_bundle_model(
    bundle: Mapping[str, Any], run_id: str, name: str = "model", tags: Mapping[str, str] | None = None
) -> ModelInfo:
    """Log ``bundle`` as the alloy-mtl pyfunc under ``run_id`` (uses the global MLflow tracking URI).

    Returns:
        MLflow's ``ModelInfo`` (``model_uri`` is ``models:/m-<id>``); the model's files live under the run's
        experiment artifact root (``<artifact root>/models/m-<id>/artifacts``).
    """
    with tempfile.TemporaryDirectory(prefix="alloy_mtl_model_") as tmp:
        folder = Path(tmp)
        weights = folder / "bundle.pt"
        torch.save(dict(bundle), weights)
        code = package_model_code(folder / "code")
        example = example_input(bundle)
        model = load_model(bundle)
        output = pyfunc_model.predict_frame(model, bundle, example)
        # Create the logged model in the run's own experiment: Model.log alone would put it in the fluent
        # "current" experiment (the Default one, whose artifact root is ./mlruns of the working directory).
        client = MlflowClient()
        logged = client.create_logged_model(
            experiment_id=client.get_run(run_id).info.experiment_id,
            name=name,
            source_run_id=run_id,
            tags=dict(tags or {}),
            model_type="alloy_mtl",
        )
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=_pyfunc_flavor(),
            run_id=run_id,
            python_model=str(PYFUNC_FILE),
            artifacts={pyfunc_model.BUNDLE_ARTIFACT: str(weights)},
            code_paths=[str(code)],
            signature=model_signature(bundle, example, output),
            input_example=(example, dict(pyfunc_model.DEFAULT_PARAMS)),
            pip_requirements=pinned_requirements(),
            metadata={
                "arch": str(bundle["arch"]),
                "in_chans": int(bundle["in_chans"]),
                "image_size": int(bundle["image_size"]),
                "classes": [list(t.classes) for t in parse_tasks(bundle["tasks"]) if t.is_classification],
                "tasks": sorted(bundle["tasks"]),
            },
            model_id=logged.model_id,
        )
    logger.info("logged %s model to run %s as %s", bundle["arch"], run_id, info.model_uri)
    return info


def _pyfunc_flavor() -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc
