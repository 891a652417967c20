"""The served alloy-mtl model: an MLflow pyfunc logged from code (this file is the model's code).

Input: raw radiographs, N x C x H x W, either I/I0 floats or 8/16-bit detector counts (sent as numbers).
Output: one row per image with the alloy, one ``prob_<alloy>`` column per class and each regression target
(``thickness_mm``, ``absorption``) in its original units.

Everything between the two is inside: bit-depth scaling (:func:`to_intensity`), the downsampling of square
radiographs larger than the training size to it (as training did, ``alloy_mtl.mtl.loading.resize``), the model's own input
normaliser (part of its weights), the forward pass, softmax and target de-standardisation
(:func:`destandardise`). The weights are read with ``torch.load(..., weights_only=True)``: loading a registered
model unpickles no arbitrary object. The model is rebuilt with ``alloy_mtl.mtl.models.multitask`` only, which the logged
model carries in its ``code/`` folder (see :mod:`alloy_mtl.tracking.model_logging`).

Inference parameters (``params=`` in ``predict``, ``"params"`` in a served request):
``bit_depth``: ``auto`` (default), ``float`` or the detector's bit depth ``1``..``16`` (``12`` for a 12-bit
detector, as ``data_source.options.bit_depth`` at ingest); ``batch_size`` (default 64); for a model
conditioned on the instrument (``training.instrument_conditioning``), ``instrument_<setting>`` such as
``instrument_kv_scale`` (each defaults to the training images' typical value).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from alloy_mtl.mtl.loading.preprocess import bundle_bad_pixels, prepare_images
from alloy_mtl.mtl.loading.resize import check_resizable
from alloy_mtl.mtl.models.conditioning import attach_settings
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.tasks import parse_tasks

BUNDLE_ARTIFACT = "bundle"
"""Name of the weights file in the logged model's ``artifacts``."""
BIT_DEPTHS: tuple[str, ...] = ("auto", "float", *(str(bits) for bits in range(1, 17)))
DEFAULT_PARAMS: dict[str, Any] = {"bit_depth": "auto", "batch_size": 64}
INSTRUMENT_PARAM_PREFIX = "instrument_"
"""``params`` ``instrument_<setting>`` (e.g. ``instrument_kv_scale``) tell an instrument-conditioned model the
instrument the radiographs come from (fitted or calibrated); a setting not given takes the training images'
typical value."""


def to_intensity(images: np.ndarray, bit_depth: str = "auto") -> np.ndarray:
    """Raw radiographs as float32 I/I0 (the scaling of ``alloy_mtl.data.ingest.read_image``).

    ``N`` (1..16) divides by 2**N - 1 (``8``: 255, ``12``: 4095, ``16``: 65535); ``float`` keeps the values;
    ``auto`` treats an integer dtype by its width, integer-valued floats above 1 as counts (<= 255: 8-bit,
    <= 65535: 16-bit) and anything else as I/I0. A 16-bit image whose brightest pixel is <= 255 is ambiguous in ``auto``: pass ``bit_depth: 16``.

    Raises:
        ValueError: not N x C x H x W, non-finite pixels, an unknown ``bit_depth``, or counts out of range.
    """
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"input: expected N x C x H x W radiographs, got shape {array.shape}")
    bit_depth = str(bit_depth)
    if bit_depth not in BIT_DEPTHS:
        raise ValueError(f"params bit_depth: got {bit_depth!r}, expected auto, float or 1..16")
    if array.dtype == np.uint8 and bit_depth == "auto":
        bit_depth = "8"
    elif array.dtype == np.uint16 and bit_depth == "auto":
        bit_depth = "16"
    values = array.astype(np.float32, copy=False)
    n_bad = int(np.count_nonzero(~np.isfinite(values)))
    if n_bad:
        raise ValueError(f"input: {n_bad} NaN/inf pixel(s); every pixel must be finite")
    if bit_depth == "auto":
        bit_depth = _guess_bit_depth(values)
    if bit_depth == "float":
        return values
    scale = float(2 ** int(bit_depth) - 1)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > scale:
        raise ValueError(f"input: {bit_depth}-bit counts must lie in [0, {scale:.0f}], got [{low}, {high}]")
    return values / np.float32(scale)


def _guess_bit_depth(values: np.ndarray) -> str:
    high = float(values.max()) if values.size else 0.0
    if high <= 1.0 or not np.array_equal(values, np.round(values)):
        return "float"
    if high <= 255.0:
        return "8"
    if high <= 65535.0:
        return "16"
    raise ValueError(f"input: integer-valued pixels up to {high:.0f} exceed 16 bits; send I/I0 floats")


def predict_frame(
    model: torch.nn.Module,
    bundle: Mapping[str, Any],
    intensity: np.ndarray,
    batch_size: int = 64,
    instrument: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per image: ``<target>`` and ``prob_<class>`` per classification task, ``<target>`` per
    regression task (original units). An instrument-conditioned model is told ``instrument`` (its settings by
    key; any it lacks: the training images' typical value)."""
    in_chans = int(bundle["in_chans"])
    if intensity.shape[1] != in_chans:
        raise ValueError(
            f"input: {intensity.shape[1]} channel(s) per image, but the model was trained on {in_chans} "
            "(one per tube voltage)"
        )
    size = int(bundle["image_size"])
    try:
        check_resizable(intensity.shape[2], intensity.shape[3], size)
    except ValueError as error:
        raise ValueError(f"input: {error}") from None
    tasks = parse_tasks(bundle["tasks"])
    settings = _instrument_settings(model, instrument)
    chunks: list[dict[str, np.ndarray]] = []
    with torch.inference_mode():
        for start in range(0, len(intensity), max(1, int(batch_size))):
            batch = torch.from_numpy(np.ascontiguousarray(intensity[start : start + batch_size]))
            # bad pixels corrected and resized as in training (the CNNs train downsampled)
            batch = prepare_images(batch, size, bundle_bad_pixels(bundle))
            if settings is not None:
                batch = attach_settings(batch, settings.expand(len(batch), -1))
            # the model undoes its own target standardisation (its target_scaler buffers)
            chunks.append({k: v.detach().float().cpu().numpy() for k, v in model.predict(batch).items()})
    columns: dict[str, Any] = {}
    for task in tasks:
        values = np.concatenate([c[task.name] for c in chunks]) if chunks else np.empty((0,))
        if task.is_classification:
            probs = torch.softmax(torch.from_numpy(values.reshape(len(intensity), -1)), dim=1).numpy()
            labels = list(task.classes)
            columns[task.target] = np.asarray(labels, dtype=object)[probs.argmax(axis=1)]
            for i, label in enumerate(labels):
                columns[f"prob_{label}"] = probs[:, i].astype(np.float64)
        else:
            columns[task.target] = values.reshape(-1).astype(np.float64)
    return pd.DataFrame(columns)


def _instrument_settings(model: torch.nn.Module, instrument: Mapping[str, Any] | None) -> torch.Tensor | None:
    """(1, K) settings of a conditioned model's instrument keys (None for an unconditioned model)."""
    conditioning = getattr(model, "conditioning", None)
    if conditioning is None:
        return None
    given = {key: value for key, value in (instrument or {}).items() if value is not None}
    values = {**conditioning.typical(), **given}
    problems = []
    for key in conditioning.keys:
        try:
            values[key] = float(values[key])
        except (TypeError, ValueError):
            values[key] = float("nan")
        if not np.isfinite(values[key]):
            problems.append(
                f"{INSTRUMENT_PARAM_PREFIX}{key}: expected a finite number, got {given.get(key)!r}"
            )
    if problems:
        raise ValueError("params " + "; ".join(problems))
    return torch.tensor([[values[key] for key in conditioning.keys]], dtype=torch.float32)


class AlloyMtlModel(PythonModel):
    """Pyfunc wrapper: raw radiographs in, alloy + class probabilities + thickness + absorption out."""

    def load_context(self, context: Any) -> None:
        """Read the weights (``weights_only=True``) and rebuild the model."""
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
        self.bundle = torch.load(context.artifacts[BUNDLE_ARTIFACT], map_location="cpu", weights_only=True)
        self.model = load_model(self.bundle)

    def predict(self, context, model_input, params=None):  # untyped: MLflow reads hints as a schema
        """Predict a batch of radiographs (see the module docstring for input and params)."""
        settings = {**DEFAULT_PARAMS, **(params or {})}
        if isinstance(model_input, pd.DataFrame):
            raise ValueError("input: send an N x C x H x W tensor ({'inputs': [...]}), not a DataFrame")
        intensity = to_intensity(np.asarray(model_input), str(settings["bit_depth"]))
        instrument = {
            key.removeprefix(INSTRUMENT_PARAM_PREFIX): value
            for key, value in settings.items()
            if key.startswith(INSTRUMENT_PARAM_PREFIX)
        }
        return predict_frame(self.model, self.bundle, intensity, int(settings["batch_size"]), instrument)


set_model(AlloyMtlModel())
