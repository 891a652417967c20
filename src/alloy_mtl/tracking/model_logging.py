"""Log a trained model bundle as the alloy-mtl pyfunc (models-from-code), with signature and input example.

The logged model holds: ``python_model`` = :mod:`alloy_mtl.tracking.pyfunc_model` (the file, not a pickle,
its imports renamed to the vendored package); ``artifacts/bundle.pt`` (tensors and plain values only, read with
``weights_only=True``); ``code/_alloy_mtl_served_<hash>``: the modules the pyfunc imports, found by following
its ``alloy_mtl`` imports (nothing of the trainer, the data layer, Kedro or the pipelines), under a private
name so that loading the model never shadows the installed ``alloy_mtl`` (see
:mod:`alloy_mtl.tracking.served_code`); pinned pip requirements (no requirement inference, which would load
the model in a subprocess).
"""

from __future__ import annotations

import importlib.metadata
import logging
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

from alloy_mtl.mtl.loading.preprocess import bundle_bad_pixels
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.tracking import pyfunc_model
from alloy_mtl.tracking.served_code import importable, vendor_model_code

logger = logging.getLogger(__name__)

PYFUNC_FILE = Path(pyfunc_model.__file__).resolve()
REQUIREMENTS = ("mlflow", "torch", "timm", "numpy", "pandas", "scipy")


def pinned_requirements() -> list[str]:
    """``name==version`` of the packages the pyfunc imports, from this environment."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def served_params(model: torch.nn.Module) -> dict[str, Any]:
    """The served model's params and their defaults: :data:`pyfunc_model.DEFAULT_PARAMS`, and for an
    instrument-conditioned model ``instrument_<setting>`` at the training images' typical value (MLflow
    ignores a param its signature does not declare)."""
    conditioning = getattr(model, "conditioning", None)
    typical = {} if conditioning is None else conditioning.typical()
    instrument = {f"{pyfunc_model.INSTRUMENT_PARAM_PREFIX}{key}": value for key, value in typical.items()}
    return {**pyfunc_model.DEFAULT_PARAMS, **instrument}


def model_signature(
    bundle: Mapping[str, Any], example: np.ndarray, output: Any, params: Mapping[str, Any] | None = None
) -> ModelSignature:
    """Tensor input ``float32 (-1, -1, -1, -1)`` (any batch, channels and image size: the model checks the
    channels itself, so a wrong count is refused with its own message rather than MLflow's schema error), the
    output columns, the params (default :data:`pyfunc_model.DEFAULT_PARAMS`)."""
    params = dict(pyfunc_model.DEFAULT_PARAMS if params is None else params)
    inferred = infer_signature(example, output, params=params)
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1, -1))])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def example_input(bundle: Mapping[str, Any]) -> np.ndarray:
    """One radiograph of the model's training size, I/I0 falling from 0.8 to 0.3 across it like a wedge's."""
    size = int(bundle["image_size"])
    ramp = np.linspace(0.8, 0.3, size, dtype=np.float32)
    return np.broadcast_to(ramp, (1, int(bundle["in_chans"]), size, size)).copy()


def log_bundle_model(
    bundle: Mapping[str, Any],
    run_id: str,
    name: str = "model",
    tags: Mapping[str, str] | None = None,
    instrument: Mapping[str, Any] | None = None,
) -> ModelInfo:
    """Log ``bundle`` as the alloy-mtl pyfunc under ``run_id`` (uses the global MLflow tracking URI).

    ``instrument``: the instrument the training data were simulated with (nominal or calibrated to a lab's), kept
    in the model's metadata (``instrument``) so that a request from another instrument can be recognised.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri`` is ``models:/m-<id>``); the model's files live under the run's
        experiment artifact root (``<artifact root>/models/m-<id>/artifacts``).
    """
    with tempfile.TemporaryDirectory(prefix="alloy_mtl_model_") as tmp:
        folder = Path(tmp)
        weights = folder / "bundle.pt"
        torch.save(dict(bundle), weights)
        code = vendor_model_code(PYFUNC_FILE, folder / "served")
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
        with importable(code):  # MLflow runs the (rewritten) model file once while it logs it
            info = Model.log(
                artifact_path=None,
                name=name,
                flavor=_pyfunc_flavor(),
                run_id=run_id,
                python_model=str(code.model_file),
                artifacts={pyfunc_model.BUNDLE_ARTIFACT: str(weights)},
                code_paths=[str(code.folder / code.package)],
                signature=model_signature(bundle, example, output, served_params(model)),
                input_example=(example, served_params(model)),
                pip_requirements=pinned_requirements(),
                metadata={
                    "arch": str(bundle["arch"]),
                    "in_chans": int(bundle["in_chans"]),
                    "image_size": int(bundle["image_size"]),
                    "preprocessing": {"bad_pixels": bundle_bad_pixels(bundle)},
                    "classes": [list(t.classes) for t in parse_tasks(bundle["tasks"]) if t.is_classification],
                    "tasks": sorted(bundle["tasks"]),
                    "instrument_keys": list(getattr(model, "instrument_keys", [])),
                    **({"instrument": dict(instrument)} if instrument else {}),
                },
                model_id=logged.model_id,
            )
    logger.info("logged %s model to run %s as %s", bundle["arch"], run_id, info.model_uri)
    return info


def _pyfunc_flavor() -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc
