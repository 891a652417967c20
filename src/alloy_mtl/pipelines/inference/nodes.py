"""Nodes of the inference pipeline: thin wrappers over :mod:`alloy_mtl.tracking.inference`."""

from __future__ import annotations

import logging
from typing import Any

import mlflow.pyfunc
import pandas as pd

from alloy_mtl.mtl.loading.preprocess import bundle_bad_pixels
from alloy_mtl.tracking.inference import failed_rows, image_files, parse_inference_settings, predict_files

logger = logging.getLogger(__name__)


class InferenceFilesFailed(RuntimeError):
    """Some files could not be predicted; their errors are in the predictions CSV (``error`` column)."""


def predict_folder(inference: dict[str, Any], model_name: str) -> pd.DataFrame:
    """Predict every PNG/TIFF file of ``inference.input`` with ``inference.model_uri`` (default: the
    champion of ``registry.model_name``); one row per file, errors in their rows."""
    settings = parse_inference_settings(inference, model_name)
    files = image_files(settings.input, settings.recursive)
    model = mlflow.pyfunc.load_model(settings.model_uri)
    metadata = model.metadata.metadata or {}
    if "in_chans" not in metadata or "image_size" not in metadata:
        raise ValueError(f"{settings.model_uri}: not an alloy-mtl model (no in_chans/image_size metadata)")
    keys = list(metadata.get("instrument_keys") or [])
    unknown = sorted(set(settings.instrument or {}) - set(keys))
    if unknown:
        raise ValueError(
            f"parameters inference.instrument: {unknown} not read by {settings.model_uri}; it reads "
            f"{keys or 'no instrument settings (not instrument-conditioned)'}"
        )
    logger.info("predicting %d file(s) of %s with %s", len(files), settings.input, settings.model_uri)
    return predict_files(
        model,
        files,
        int(metadata["in_chans"]),
        int(metadata["image_size"]),
        root=settings.input,
        batch_size=settings.batch_size,
        bit_depth=settings.bit_depth,
        bad_pixels=bundle_bad_pixels(metadata),
        instrument=settings.instrument,
        reject_rate=settings.reject_rate,
    )


def check_failures(predictions: pd.DataFrame) -> None:
    """Fail the run (non-zero exit status) when a file was not predicted; the CSV is already written.

    Raises:
        InferenceFilesFailed: naming how many and which files failed.
    """
    failed = failed_rows(predictions)
    if len(failed):
        listed = "; ".join(f"{row.file}: {row.error}" for row in failed.head(10).itertuples())
        raise InferenceFilesFailed(
            f"{len(failed)} of {len(predictions)} file(s) could not be predicted (errors in the 'error' column "
            f"of inference_predictions): {listed}"
        )
    logger.info("predicted all %d file(s)", len(predictions))
