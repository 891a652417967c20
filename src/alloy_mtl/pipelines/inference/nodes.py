"""Nodes of the inference pipeline: thin wrappers over :mod:`alloy_mtl.tracking.inference`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from alloy_mtl.config import parse_params
from alloy_mtl.data.ingest import scan_dataset
from alloy_mtl.data.params import IngestOptions
from alloy_mtl.evaluation.detector_pattern import fit_pattern_reference
from alloy_mtl.evaluation.drift import DriftParams, check_batches, drift_markdown, drift_table
from alloy_mtl.evaluation.evaluation_set import simulate_evaluation_set
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.physics_unknown import PhysicsUnknownScore
from alloy_mtl.evaluation.unit_conformal import (
    FITTED_ON_COLUMN,
    UnitConformalParams,
    UnitSets,
    refit_record,
    unit_conformal_markdown,
)
from alloy_mtl.mtl.loading.preprocess import bundle_bad_pixels, prepare_images
from alloy_mtl.mtl.models.ood import DEFAULT_REJECT_RATE
from alloy_mtl.physics.calibrated_generation import recorded_config
from alloy_mtl.physics.simulator import SimulationConfig
from alloy_mtl.tracking.designation_check import (
    DesignationScores,
    mark_unknown_designations,
    score_designations,
)
from alloy_mtl.tracking.inference import (
    InferenceSettings,
    PreparedFolder,
    failed_rows,
    parse_inference_settings,
    predict_prepared,
    prepare_folder,
)
from alloy_mtl.tracking.labelled_folder import LabelledFolder, labelled_answers, read_labelled
from alloy_mtl.tracking.listed_images import METADATA_FILE, has_listing, image_files, listed_images

logger = logging.getLogger(__name__)

NOT_REFITTED = "Not refitted (inference.unit_conformal.calibration: null)"
"""What ``read_inputs`` passes on for the labelled folder when none is given."""


class InferenceFilesFailed(RuntimeError):
    """Some files could not be predicted; their errors are in the predictions CSV (``error`` column)."""


class InstrumentDrift(RuntimeError):
    """The drift alarm fired and ``inference.drift.fail_on_alarm`` is set; the predictions and report are written."""


def _model_metadata(settings: InferenceSettings) -> dict[str, Any]:
    """The alloy-mtl metadata of ``settings.model_uri`` (read without loading the model).

    Raises:
        ValueError: not an alloy-mtl model, or ``inference.instrument`` names settings the model does not read.
    """
    metadata = mlflow.models.get_model_info(settings.model_uri).metadata or {}
    if "in_chans" not in metadata or "image_size" not in metadata:
        raise ValueError(f"{settings.model_uri}: not an alloy-mtl model (no in_chans/image_size metadata)")
    keys = list(metadata.get("instrument_keys") or [])
    unknown = sorted(set(settings.instrument or {}) - set(keys))
    if unknown:
        raise ValueError(
            f"parameters inference.instrument: {unknown} not read by {settings.model_uri}; it reads "
            f"{keys or 'no instrument settings (not instrument-conditioned)'}"
        )
    return metadata


def read_folder(inference: dict[str, Any], model_name: str) -> PreparedFolder:
    """Read every PNG/TIFF file of ``inference.input`` (or every image its ``metadata.csv`` lists, per-channel
    files allowed) once, checked and prepared as the model
    (``inference.model_uri``, default: the champion of ``registry.model_name``) takes it: what prediction and
    the drift alarm share (``inference_images``, in memory)."""
    settings = parse_inference_settings(inference, model_name)
    return _read_folder(settings, _model_metadata(settings))


def _read_folder(settings: InferenceSettings, metadata: dict[str, Any]) -> PreparedFolder:
    listed = has_listing(settings.input)
    files: list[Any] = (
        listed_images(settings.input) if listed else image_files(settings.input, settings.recursive)
    )
    logger.info(
        "reading %d image(s) of %s%s for %s",
        len(files),
        settings.input,
        f" (as its {METADATA_FILE} lists them)" if listed else "",
        settings.model_uri,
    )
    return prepare_folder(
        files,
        int(metadata["in_chans"]),
        int(metadata["image_size"]),
        root=settings.input,
        bit_depth=settings.bit_depth,
        bad_pixels=bundle_bad_pixels(metadata),
    )


def check_designations(
    folder: PreparedFolder,
    score: PhysicsUnknownScore | str | None,
    inference: dict[str, Any],
    model_name: str,
    generation: dict[str, Any] | None,
) -> DesignationScores:
    """The physics unknown-designation score of every usable file (:mod:`alloy_mtl.tracking.designation_check`),
    at the threshold for ``inference.reject_rate``; where it does not apply, why."""
    settings = parse_inference_settings(inference, model_name)
    rate = DEFAULT_REJECT_RATE if settings.reject_rate is None else settings.reject_rate
    return score_designations(
        score,
        folder.images(),
        folder.usable_files(),
        _model_metadata(settings),
        generation=generation,
        reject_rate=rate,
    )


def fit_unit_conformal(
    labelled: LabelledFolder | str,
    inference: dict[str, Any],
    unit_conformal: dict[str, Any] | None,
    model_name: str,
) -> tuple[dict[str, Any], str]:
    """Refit the conformal sets and intervals of ``inference.model_uri`` on its answers for the labelled folder
    ``inference.unit_conformal.calibration`` (:mod:`alloy_mtl.evaluation.unit_conformal`), checked on that
    folder by specimen folds; without a folder (``labelled`` is then why), a record saying the model's own sets
    are used. Returns the
    record (what :func:`predict_folder` applies) and its report.

    Raises:
        ValueError: a labelled image the model could not answer, a label that is not one of its classes, or an
            alloy with too few images for the coverage, every problem named.
    """
    params = parse_params(UnitConformalParams, unit_conformal, "inference.unit_conformal")
    if not isinstance(labelled, LabelledFolder):
        record = {"skipped": f"{labelled}: the model's own sets."}
        return record, unit_conformal_markdown(record)
    settings = parse_inference_settings(inference, model_name)
    metadata = _model_metadata(settings)
    model = mlflow.pyfunc.load_model(settings.model_uri)
    logger.info(
        "refitting the conformal sets on %d labelled image(s) of %s", len(labelled.images), labelled.folder
    )
    answers = labelled_answers(
        model,
        labelled,
        batch_size=settings.batch_size,
        instrument=settings.instrument,
        reject_rate=settings.reject_rate,
    )
    classes = [str(c) for c in (metadata.get("classes") or [[]])[0]]
    try:
        record = refit_record(
            answers,
            classes,
            labelled.metadata["specimen_id"].astype(str).tolist(),
            params,
            fitted_on=str(labelled.folder),
            model_uri=settings.model_uri,
        )
    except ValueError as error:
        raise ValueError(
            f"parameters inference.unit_conformal.calibration: '{labelled.folder}': {error}"
        ) from None
    if record["advice"]:
        logger.warning("conformal sets refitted on %s: %s", labelled.folder, record["advice"])
    return record, unit_conformal_markdown(record)


def predict_folder(
    folder: PreparedFolder,
    designations: DesignationScores,
    unit_conformal: dict[str, Any] | None,
    inference: dict[str, Any],
    model_name: str,
) -> pd.DataFrame:
    """Predict the read folder with ``inference.model_uri``; one row per file, errors in their rows; an image
    above the model's unknown threshold or the physics one (``designations``) is answered ``unknown``; sets and
    intervals are the ones refitted on the detector in operation where ``unit_conformal`` holds them
    (:func:`fit_unit_conformal`)."""
    settings = parse_inference_settings(inference, model_name)
    model = mlflow.pyfunc.load_model(settings.model_uri)
    logger.info("predicting %d usable file(s) with %s", len(folder.good), settings.model_uri)
    refit = (
        UnitSets.from_dict(unit_conformal) if unit_conformal and "class_quantiles" in unit_conformal else None
    )
    predictions = predict_prepared(
        model,
        folder,
        batch_size=settings.batch_size,
        instrument=settings.instrument,
        reject_rate=settings.reject_rate,
        conformal_sets=None if refit is None else json.dumps(refit.to_dict()),
    )
    if refit is not None and FITTED_ON_COLUMN not in predictions.columns:
        logger.warning(
            "%s takes no conformal_sets param (logged before it could): refit sets applied to its answers",
            settings.model_uri,
        )
        predictions = refit.apply(predictions)
    return mark_unknown_designations(predictions, designations)


@dataclass(frozen=True)
class DriftReference:
    """What the drift alarm compares the batches with, read before anything is predicted or written: the beam the
    model recorded (``instrument``) and the detector reference's images (``images``, described by
    ``described``); or, where the drift is not checked, why (``skipped``: the report's text)."""

    instrument: SimulationConfig | None = None
    images: np.ndarray | None = None
    described: str = ""
    skipped: str = ""
    params: DriftParams | None = None


def read_drift_reference(
    inference: dict[str, Any],
    drift: dict[str, Any] | None,
    model_name: str,
    generation: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
) -> DriftReference:
    """The drift alarm's reference (:class:`DriftReference`): the instrument ``inference.model_uri`` recorded and
    the detector reference's images, ``inference.drift.reference`` (default: the generated evaluation set).

    Raises:
        ValueError: a bad ``inference.drift`` setting, or a reference folder without 2 usable images of the
            model's channel count, naming the folder.
    """
    params = parse_params(DriftParams, drift, "inference.drift")
    settings = parse_inference_settings(inference, model_name)
    return _drift_reference(params, settings, _model_metadata(settings), generation, evaluation)


def _drift_reference(
    params: DriftParams,
    settings: InferenceSettings,
    metadata: dict[str, Any],
    generation: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
) -> DriftReference:
    if not params.enabled:
        return DriftReference(skipped="Disabled (inference.drift.enabled: false).")
    in_chans, size = int(metadata["in_chans"]), int(metadata["image_size"])
    bad_pixels = bundle_bad_pixels(metadata)
    recorded = metadata.get("instrument")
    if recorded is None:  # trained on a lab folder (or logged before models recorded it)
        return _not_checked(
            f"not checked: {settings.model_uri} records no instrument (it was not trained on simulated images), "
            "so there is no beam to compare the batches with"
        )
    instrument = recorded_config(generation, recorded, size)
    if len(instrument.kv) != in_chans:  # e.g. a model trained on a one-channel lab folder: nothing simulated
        return _not_checked(
            f"not checked: {settings.model_uri} takes {in_chans} channel(s), the simulated instrument it would be "
            f"compared with has {len(instrument.kv)} ({instrument.kv_label} kV)"
        )
    if params.reference:
        reference = Path(params.reference).expanduser()
        images = _reference_images(reference, in_chans, size, settings.bit_depth, bad_pixels)
        return DriftReference(instrument, images, f"the reference folder {reference}", params=params)
    simulated, _ = simulate_evaluation_set(
        generation, parse_params(EvaluationParams, evaluation, "evaluation").evaluation_set
    )
    images = prepare_images(torch.from_numpy(simulated), size, bad_pixels).numpy()
    return DriftReference(instrument, images, "the generated evaluation set's detector", params=params)


def _not_checked(reason: str) -> DriftReference:
    logger.warning("drift alarm %s", reason)
    return DriftReference(skipped=f"Drift {reason}.")


def read_inputs(  # noqa: PLR0917 (one input per catalog dataset)
    inference: dict[str, Any],
    drift: dict[str, Any] | None,
    model_name: str,
    generation: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
    unit_conformal: dict[str, Any] | None = None,
) -> tuple[PreparedFolder, DriftReference, LabelledFolder | str]:
    """:func:`read_folder`, :func:`read_drift_reference` and the labelled folder the conformal sets are refitted
    on (``inference.unit_conformal.calibration``; without one, :data:`NOT_REFITTED`: a dataset holds no None) in one
    node, so that a bad reference or labelled folder stops the run before the predictions are written; a problem of
    each is named in one error.

    Raises:
        ValueError: every problem of the input folder, the drift reference and the labelled folder.
    """
    settings = parse_inference_settings(inference, model_name)
    metadata = _model_metadata(settings)  # the model's record, read once for all
    problems: list[str] = []
    folder = reference = None
    labelled: LabelledFolder | str = NOT_REFITTED
    try:
        folder = _read_folder(settings, metadata)
    except ValueError as error:
        problems.append(str(error))
    try:
        params = parse_params(DriftParams, drift, "inference.drift")
        reference = _drift_reference(params, settings, metadata, generation, evaluation)
    except ValueError as error:
        problems.append(str(error))
    try:
        calibration = parse_params(
            UnitConformalParams, unit_conformal, "inference.unit_conformal"
        ).calibration
        if calibration:
            labelled = read_labelled(
                Path(calibration).expanduser(),
                int(metadata["in_chans"]),
                int(metadata["image_size"]),
                bit_depth=settings.bit_depth,
                bad_pixels=bundle_bad_pixels(metadata),
            )
    except ValueError as error:
        problems.append(str(error))
    if problems:
        raise ValueError("; ".join(problems))
    return folder, reference, labelled


def check_drift(folder: PreparedFolder, reference: DriftReference) -> tuple[pd.DataFrame, str]:
    """The drift alarm on every batch of the read folder (:mod:`alloy_mtl.evaluation.drift`): the beam
    against the instrument the model recorded, the detector against the reference's
    (:func:`read_drift_reference`), with its ``inference.drift`` settings. Returns the drift table and its
    markdown report."""
    params = reference.params
    if reference.instrument is None or reference.images is None or params is None:
        return drift_table([]), f"# Drift alarm\n\n{reference.skipped}\n"
    batches = check_batches(
        folder.images(),
        folder.usable_files(),
        reference.instrument,
        fit_pattern_reference(reference.images),
        params,
    )
    table = drift_table(batches)
    for batch in batches:
        if batch.alarm:
            logger.warning(
                "drift alarm, batch %d (%s .. %s): %s",
                batch.index,
                batch.first_file,
                batch.last_file,
                "; ".join(batch.reasons()),
            )
    return table, drift_markdown(table, reference.described, params)


def _reference_images(
    folder: Path, in_chans: int, size: int, bit_depth: int | None, bad_pixels: str
) -> np.ndarray:
    """The detector reference's images as the model takes them: a csv_folder (``metadata.csv``, e.g. the lab's
    calibration folder, one file per channel allowed) through the lab ingest, else one image per file.

    Raises:
        ValueError: fewer than 2 usable images, or images of another channel count, naming the folder.
    """
    where = f"parameters inference.drift.reference: '{folder}'"
    if (folder / IngestOptions().metadata_file).is_file():
        ingested = scan_dataset(folder, "csv_folder", bit_depth=bit_depth)
        images = np.asarray(ingested.data.images, dtype=np.float32)
        if images.shape[1] != in_chans:
            raise ValueError(f"{where} holds {images.shape[1]}-channel images, the model takes {in_chans}")
        prepared = (
            prepare_images(torch.from_numpy(images), size, bad_pixels).numpy() if len(images) else images
        )
        errors = ""
    else:
        read = prepare_folder(
            image_files(folder, parameter="inference.drift.reference"),
            in_chans,
            size,
            root=folder,
            bit_depth=bit_depth,
            bad_pixels=bad_pixels,
        )
        prepared = read.images()
        errors = "; ".join(f"{row['file']}: {row['error']}" for row in read.rows if row["error"])
    if len(prepared) < 2:
        raise ValueError(
            f"{where} has {len(prepared)} usable image(s), the detector test needs at least 2 from the detector in "
            f"operation{f' ({errors})' if errors else ''}"
        )
    return prepared


def check_failures(
    predictions: pd.DataFrame, drift: pd.DataFrame, drift_params: dict[str, Any] | None
) -> None:
    """Fail the run (non-zero exit status) when a file was not predicted, or on a drift alarm where
    ``inference.drift.fail_on_alarm`` is set; the predictions and the drift report are already written.

    Raises:
        InferenceFilesFailed: naming how many and which files failed.
        InstrumentDrift: naming the batches that raised the alarm.
    """
    params = parse_params(DriftParams, drift_params, "inference.drift")
    if params.fail_on_alarm and not drift.empty and drift["alarm"].any():
        alarms = drift[drift["alarm"]]
        raise InstrumentDrift(
            f"drift alarm in {len(alarms)} of {len(drift)} batch(es) (data/08_reporting/inference/drift.md): "
            + "; ".join(f"batch {row.batch}: {row.reasons}" for row in alarms.itertuples())
        )
    failed = failed_rows(predictions)
    if len(failed):
        listed = "; ".join(f"{row.file}: {row.error}" for row in failed.head(10).itertuples())
        raise InferenceFilesFailed(
            f"{len(failed)} of {len(predictions)} file(s) could not be predicted (errors in the 'error' column "
            f"of inference_predictions): {listed}"
        )
    logger.info("predicted all %d file(s)", len(predictions))
