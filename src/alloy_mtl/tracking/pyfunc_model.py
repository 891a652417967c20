"""The served alloy-mtl model: an MLflow pyfunc logged from code (this file is the model's code).

Input: raw radiographs, N x C x H x W, either I/I0 floats or detector counts (sent as numbers, with
``bit_depth``). Input the model cannot answer for is refused before any work (:func:`to_intensity`,
:mod:`alloy_mtl.mtl.loading.input_guards`), as :class:`InputRefused`: HTTP 400 with the project's message.
Output: one row per image with the alloy, one ``prob_<alloy>`` column per class and each regression target
(``thickness_mm``, ``absorption``) in its original units; ``ood_score`` (how unlike the training images the
image is, ``alloy_mtl.mtl.models.ood``), ``ood_threshold`` and ``unknown_reason``: above the threshold the alloy
is answered ``unknown`` (the probabilities and regression values are still given, as what the model would say
were it one of the five). A model without a fitted score answers NaN scores and never ``unknown``. Then
the split-conformal answers (``alloy_mtl.mtl.models.conformal``): ``alloy_set`` (the alloys the set holds,
``|``-separated; every alloy is covered at the model's coverage, default 90 %, on data like its validation data),
``alloy_set_size`` (-1 without fitted sets), ``<target>_low`` / ``<target>_high`` per regression target (NaN
without), and ``conformal_fitted_on``: ``model`` (its own sets), what the sets given in ``conformal_sets`` were
fitted on, or empty (no sets).

Everything between the two is inside: bit-depth scaling (:func:`to_intensity`), the downsampling of square
radiographs larger than the training size to it (as training did, ``alloy_mtl.mtl.loading.resize``), the model's own input
normaliser (part of its weights), the forward pass, softmax and target de-standardisation
(:func:`destandardise`). The weights are read with ``torch.load(..., weights_only=True)``: loading a registered
model unpickles no arbitrary object. The model is rebuilt with ``alloy_mtl.mtl.models.multitask`` only, which the logged
model carries in its ``code/`` folder (see :mod:`alloy_mtl.tracking.model_logging`).

Inference parameters (``params=`` in ``predict``, ``"params"`` in a served request):
``bit_depth``: ``auto`` (default: I/I0 floats, or uint8 counts), ``float`` or the detector's bit depth
``1``..``16`` (``12`` for a 12-bit detector, as ``data_source.options.bit_depth`` at ingest); ``batch_size`` (default 64); for a model
conditioned on the instrument (``training.instrument_conditioning``), ``instrument_<setting>`` such as
``instrument_kv_scale`` (each defaults to the training images' typical value); ``reject_rate`` (default
0.01): the share of validation images of the five alloys that the unknown threshold would reject (higher:
more unknown materials caught, more known ones refused an answer); ``conformal_sets`` (default empty: the
model's own): sets and intervals refitted on the detector in operation, the JSON the inference pipeline writes
(``data/08_reporting/inference/unit_conformal.json``: ``class_quantiles`` per class, ``half_widths`` per
regression target, ``fitted_on``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from alloy_mtl.mtl.loading.input_guards import (
    MAX_INPUT_VALUES,
    TRANSMISSION_RANGE,
    check_input_size,
    check_radiographs,
)
from alloy_mtl.mtl.loading.preprocess import bundle_bad_pixels, prepare_images
from alloy_mtl.mtl.loading.resize import check_resizable
from alloy_mtl.mtl.models.conditioning import attach_settings
from alloy_mtl.mtl.models.conformal import set_labels
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.mtl.models.ood import DEFAULT_REJECT_RATE
from alloy_mtl.mtl.tasks import parse_tasks

BUNDLE_ARTIFACT = "bundle"
"""Name of the weights file in the logged model's ``artifacts``."""
BIT_DEPTHS: tuple[str, ...] = ("auto", "float", *(str(bits) for bits in range(1, 17)))
DEFAULT_PARAMS: dict[str, Any] = {
    "bit_depth": "auto",
    "batch_size": 64,
    "reject_rate": DEFAULT_REJECT_RATE,
    "conformal_sets": "",
}
MODEL_SETS = "model"
"""``conformal_fitted_on`` of an answer with the model's own sets."""
UNKNOWN = "unknown"
"""The alloy answered for an image whose unknown-material score is above the threshold."""
INSTRUMENT_PARAM_PREFIX = "instrument_"
"""``params`` ``instrument_<setting>`` (e.g. ``instrument_kv_scale``) tell an instrument-conditioned model the
instrument the radiographs come from (fitted or calibrated); a setting not given takes the training images'
typical value."""


def to_intensity(
    images: np.ndarray, bit_depth: str = "auto", max_values: int = MAX_INPUT_VALUES
) -> np.ndarray:
    """Raw radiographs as float32 I/I0 (the scaling of ``alloy_mtl.data.ingest.read_image``), guarded.

    ``N`` (1..16) divides by 2**N - 1 (``8``: 255, ``12``: 4095, ``16``: 65535); ``float`` keeps the values;
    ``auto`` reads uint8 pixels as 8-bit counts and floats as I/I0, and refuses what is ambiguous: other integer
    types and whole-number values above the I/I0 range look like counts of an unknown bit depth (a 12-bit
    detector's counts read as 16-bit gave a confident wrong answer), so they need ``bit_depth``.

    Raises:
        ValueError: not N x C x H x W, more than ``max_values`` pixel values (checked on the shape, before any
            conversion), an unknown ``bit_depth``, non-finite pixels, counts out of range or of an unknown bit
            depth, or any of :func:`alloy_mtl.mtl.loading.input_guards.radiograph_problems` (I/I0 out of range,
            constant images), every problem of a kind in one message.
    """
    array = np.asarray(images)
    bit_depth = str(bit_depth)
    problems = []
    if array.ndim != 4:
        problems.append(f"input: expected N x C x H x W radiographs, got shape {array.shape}")
    if bit_depth not in BIT_DEPTHS:
        problems.append(f"params bit_depth: got {bit_depth!r}, expected auto, float or 1..16")
    if problems:
        raise ValueError("; ".join(problems))
    check_input_size(array.shape, max_values)
    if bit_depth == "auto" and array.dtype == np.uint8:
        bit_depth = "8"
    elif bit_depth == "auto" and np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"input: {array.dtype} pixels are detector counts of an unknown bit depth; pass params bit_depth "
            "(the detector's, e.g. 12 or 16) or send I/I0 floats"
        )
    values = array.astype(np.float32, copy=False)
    n_bad = int(np.count_nonzero(~np.isfinite(values)))
    if n_bad:
        raise ValueError(f"input: {n_bad} NaN/inf pixel(s); every pixel must be finite")
    if bit_depth == "auto":
        _refuse_unlabelled_counts(values)
        bit_depth = "float"
    if bit_depth != "float":
        scale = float(2 ** int(bit_depth) - 1)
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > scale:
            raise ValueError(
                f"input: {bit_depth}-bit counts must lie in [0, {scale:.0f}], got [{low}, {high}]"
            )
        values = values / np.float32(scale)
    check_radiographs(values)
    return values


def _refuse_unlabelled_counts(values: np.ndarray) -> None:
    high = float(values.max()) if values.size else 0.0
    if high > TRANSMISSION_RANGE[1] and np.array_equal(values, np.round(values)):
        raise ValueError(
            f"input: whole-number pixel values up to {high:.0f} look like detector counts; pass params bit_depth "
            "(the detector's bit depth, e.g. 12 for a 12-bit detector) or send I/I0 floats"
        )


@dataclass(frozen=True)
class GivenSets:
    """Sets and intervals given with a request (``params conformal_sets``)."""

    class_quantiles: np.ndarray
    half_widths: dict[str, float]
    fitted_on: str


def parse_conformal_sets(text: Any, classes: Sequence[str], targets: Sequence[str]) -> GivenSets | None:
    """``params conformal_sets``: None when empty, else its thresholds (one per class, in ``classes`` order)
    and half-widths (a subset of the regression ``targets``).

    Raises:
        ValueError: not a JSON object, or thresholds that are not one non-negative number per class, or
            half-widths of unknown targets or not finite and non-negative, every problem named.
    """
    if text is None or str(text).strip() == "":
        return None
    where = "params conformal_sets"
    try:
        record = json.loads(str(text))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{where}: not JSON ({error.msg}, character {error.pos}); expected the object "
            "unit_conformal.json holds"
        ) from None
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected a JSON object with class_quantiles, got {type(record).__name__}")
    problems = []
    quantiles = record.get("class_quantiles")
    if not isinstance(quantiles, Mapping) or sorted(map(str, quantiles)) != sorted(classes):
        got = sorted(map(str, quantiles)) if isinstance(quantiles, Mapping) else quantiles
        problems.append(f"class_quantiles: expected one threshold per class {list(classes)}, got {got!r}")
        quantiles = {}
    widths = record.get("half_widths") or {}
    if not isinstance(widths, Mapping):
        problems.append(f"half_widths: expected an object of target -> width, got {widths!r}")
        widths = {}
    for name, value in [*quantiles.items(), *widths.items()]:
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0
        if bad:
            problems.append(f"{name}: expected a non-negative number, got {value!r}")
    strange = sorted(set(map(str, widths)) - set(targets))
    if strange:
        problems.append(f"half_widths: {strange} are not among the model's targets {list(targets)}")
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    return GivenSets(
        class_quantiles=np.array([float(quantiles[c]) for c in classes]),
        half_widths={str(k): float(v) for k, v in widths.items()},
        fitted_on=str(record.get("fitted_on") or where),
    )


def predict_frame(
    model: torch.nn.Module,
    bundle: Mapping[str, Any],
    intensity: np.ndarray,
    batch_size: int = 64,
    instrument: Mapping[str, Any] | None = None,
    *,
    reject_rate: float = DEFAULT_REJECT_RATE,
    conformal_sets: str = "",
) -> pd.DataFrame:
    """One row per image: ``<target>`` and ``prob_<class>`` per classification task, ``<target>`` per
    regression task (original units), then ``ood_score``, ``ood_threshold`` and ``unknown_reason``; the first
    classification task's answer is ``unknown`` where the score is above the threshold for ``reject_rate``.
    An instrument-conditioned model is told ``instrument`` (its settings by key; any it lacks: the training
    images' typical value). The sets and intervals are the model's own, or those of ``conformal_sets``
    (:func:`parse_conformal_sets`; a target it gives no width keeps the model's interval)."""
    threshold = _unknown_threshold(model, reject_rate)
    tasks = parse_tasks(bundle["tasks"])
    first = next((t for t in tasks if t.is_classification), None)
    given = parse_conformal_sets(
        conformal_sets,
        list(first.classes) if first is not None else [],
        [t.target for t in tasks if not t.is_classification],
    )
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
    outputs, score = _forward(model, bundle, intensity, batch_size, _instrument_settings(model, instrument))
    columns: dict[str, Any] = {}
    first_probs = np.empty((len(intensity), 0))
    for task in tasks:
        values = outputs[task.name]
        if task.is_classification:
            logits = values.reshape(len(intensity), -1).astype(np.float64)  # as in training.predict
            probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
            labels = list(task.classes)
            columns[task.target] = np.asarray(labels, dtype=object)[probs.argmax(axis=1)]
            for i, label in enumerate(labels):
                columns[f"prob_{label}"] = probs[:, i].astype(np.float64)
            if task is first:
                first_probs = probs
        else:
            columns[task.target] = values.reshape(-1).astype(np.float64)
    conformal = _conformal_columns(model, tasks, first_probs, columns, given)
    unknown = score > threshold  # NaN (no fitted score) compares False: answered
    if first is not None:
        columns[first.target] = np.where(unknown, UNKNOWN, columns[first.target])
    columns["ood_score"] = score
    columns["ood_threshold"] = np.full(len(score), threshold)
    columns["unknown_reason"] = np.where(
        unknown,
        [
            f"unlike every trained alloy: score {value:.4g} > {threshold:.4g} (reject_rate {reject_rate:g})"
            for value in score
        ],
        "",
    ).astype(object)
    return pd.DataFrame(columns | conformal)


def _forward(
    model: torch.nn.Module,
    bundle: Mapping[str, Any],
    intensity: np.ndarray,
    batch_size: int,
    settings: torch.Tensor | None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each head's outputs (de-standardised) and the unknown-material score of every image, batch by batch."""
    size = int(bundle["image_size"])
    chunks: list[dict[str, np.ndarray]] = []
    scores: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(intensity), max(1, int(batch_size))):
            batch = torch.from_numpy(np.ascontiguousarray(intensity[start : start + batch_size]))
            # bad pixels corrected and resized as in training (the CNNs train downsampled)
            batch = prepare_images(batch, size, bundle_bad_pixels(bundle))
            if settings is not None:
                batch = attach_settings(batch, settings.expand(len(batch), -1))
            # the model undoes its own target standardisation (its target_scaler buffers)
            outputs, score = model.predict_scored(batch)
            chunks.append({k: v.detach().float().cpu().numpy() for k, v in outputs.items()})
            scores.append(score.detach().double().cpu().numpy())
    heads = {
        task.name: np.concatenate([c[task.name] for c in chunks]) if chunks else np.empty((0,))
        for task in parse_tasks(bundle["tasks"])
    }
    return heads, np.concatenate(scores) if scores else np.empty(0)


def _conformal_columns(
    model: torch.nn.Module,
    tasks: Sequence[Any],
    probs: np.ndarray,
    columns: Mapping[str, Any],
    given: GivenSets | None,
) -> dict[str, Any]:
    """The first classification task's set and its size, each regression target's interval, and what the sets
    were fitted on: the model's own sets, or ``given`` (where it gives a target no width: the model's)."""
    sets = getattr(model, "conformal", None)
    sets = sets if sets is not None and sets.fitted else None
    conformal: dict[str, Any] = {}
    first = next((t for t in tasks if t.is_classification), None)
    if first is not None:
        labels = list(first.classes)
        if given is not None:
            members = 1.0 - probs <= given.class_quantiles[None, :]
        else:
            members = sets.sets(probs) if sets is not None else np.zeros(probs.shape, dtype=bool)
        conformal[f"{first.target}_set"] = np.array(set_labels(labels, members), dtype=object)
        sized = sets is not None or given is not None
        conformal[f"{first.target}_set_size"] = (
            members.sum(axis=1) if sized else np.full(len(probs), -1)
        ).astype(np.int64)
    for task in tasks:
        if task.is_classification:
            continue
        width = sets.half_width(task.name) if sets is not None else float("nan")
        if given is not None:
            width = given.half_widths.get(task.target, width)
        conformal[f"{task.target}_low"] = columns[task.target] - width
        conformal[f"{task.target}_high"] = columns[task.target] + width
    fitted_on = given.fitted_on if given is not None else MODEL_SETS if sets is not None else ""
    conformal["conformal_fitted_on"] = np.full(len(probs), fitted_on, dtype=object)
    return conformal


def _unknown_threshold(model: torch.nn.Module, reject_rate: Any) -> float:
    """The model's unknown-material threshold for ``reject_rate`` (NaN when it carries no fitted score)."""
    try:
        rate = float(reject_rate)
    except (TypeError, ValueError):
        rate = float("nan")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"params reject_rate: expected a fraction in [0, 1), got {reject_rate!r}")
    density = getattr(model, "ood", None)
    return density.threshold(rate) if density is not None and density.fitted else float("nan")


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
        try:
            if isinstance(model_input, pd.DataFrame):
                raise ValueError("input: send an N x C x H x W tensor ({'inputs': [...]}), not a DataFrame")
            intensity = to_intensity(np.asarray(model_input), str(settings["bit_depth"]))
            instrument = {
                key.removeprefix(INSTRUMENT_PARAM_PREFIX): value
                for key, value in settings.items()
                if key.startswith(INSTRUMENT_PARAM_PREFIX)
            }
            return json_safe(
                predict_frame(
                    self.model,
                    self.bundle,
                    intensity,
                    int(settings["batch_size"]),
                    instrument,
                    reject_rate=settings["reject_rate"],
                    conformal_sets=settings["conformal_sets"],
                )
            )
        except ValueError as error:
            raise InputRefused(str(error)) from error


def json_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every NaN of a float column as None: the scoring server writes NaN (a score or interval a
    model was logged without) as the token ``NaN``, which is not JSON and which strict clients refuse; None
    becomes ``null``. Columns without NaN keep their dtype."""
    missing = [c for c in frame.columns if frame[c].dtype.kind == "f" and bool(frame[c].isna().any())]
    if not missing:
        return frame
    safe = frame.copy()
    for column in missing:
        safe[column] = safe[column].astype(object).where(safe[column].notna(), None)
    return safe


class InputRefused(MlflowException, ValueError):
    """A request the model will not answer, with the project's own message: HTTP 400 from the scoring server.

    The scoring server rewrites the ``message`` of every ``MlflowException`` a model raises to start with the
    whole input's repr (``Failed to predict data '[[[...]]]'``); this one keeps the message it was given."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        """The refusal, as raised."""
        return self._message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_message"):
            self._message = value


set_model(AlloyMtlModel())
