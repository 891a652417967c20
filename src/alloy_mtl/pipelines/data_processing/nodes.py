"""Nodes of the data_processing pipeline: thin wrappers over ``alloy_mtl.data`` and ``alloy_mtl.physics``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from alloy_mtl.config import parse_params
from alloy_mtl.data.expectations import raise_for_failures, run_expectations
from alloy_mtl.data.generated_source import generate_xray_data
from alloy_mtl.data.image_stats import image_statistics
from alloy_mtl.data.ingest import scan_dataset
from alloy_mtl.data.ingest_report import empty_report, raise_for_report
from alloy_mtl.data.lab_mix import mix_lab_images
from alloy_mtl.data.params import DataSourceParams, SplitParams, ValidationParams
from alloy_mtl.data.schema import validate_metadata
from alloy_mtl.data.split import assign_split, resolve_strategy, split_summary
from alloy_mtl.data.store import XrayData
from alloy_mtl.physics.simulator import SimulationConfig

logger = logging.getLogger(__name__)

REPORT_NOTE = "every file's status: the ingest_report dataset (data/08_reporting/ingest_report.csv)"


def acquire_dataset(source: dict[str, Any], generation: dict[str, Any]) -> tuple[XrayData, pd.DataFrame]:
    """Generate the physics-simulated dataset or read a lab's images, as ``source.kind`` says.

    Bad lab files do not stop this node: they are recorded in the ingest report, which is saved even when
    :func:`accept_dataset` then refuses the data.

    Args:
        source: ``kind`` (generated | csv_folder | class_per_folder), ``path`` and ``options`` for ingestion;
            ``lab_images``: a lab folder mixed into the generated data (``alloy_mtl.data.lab_mix``).
        generation: parameters of the wedge radiograph simulator (used when ``kind`` is generated).

    Returns:
        The usable images with their metadata, and the report of every file (empty for generated data).
    """
    params = parse_params(DataSourceParams, source, "data_source")
    if params.kind == "generated" and params.lab_images is not None:
        lab = params.lab_images
        ingested = scan_dataset(lab.path, lab.kind, lab.options)
        if not len(ingested.data):
            return ingested.data, ingested.report  # accept_dataset names every bad file
        config = SimulationConfig.from_params(generation)
        mixed = mix_lab_images(
            generate_xray_data(generation), ingested.data, config, lab.share, str(lab.path)
        )
        return mixed, ingested.report
    if params.kind == "generated":
        return generate_xray_data(generation), empty_report()
    ingested = scan_dataset(params.path, params.kind, params.options)
    return ingested.data, ingested.report


def accept_dataset(candidate: XrayData, ingest_report: pd.DataFrame, source: dict[str, Any]) -> XrayData:
    """The dataset, once its ingest report holds no bad file or dataset problem (skipped files are logged).

    Raises:
        DataValidationError: listing every problem of the report, before anything is written.
    """
    params = parse_params(DataSourceParams, source, "data_source")
    where = "generated dataset" if params.kind == "generated" else str(params.path)
    lab_where = where if params.lab_images is None else str(params.lab_images.path)
    raise_for_report(ingest_report, where=lab_where, report_note=REPORT_NOTE)
    validate_metadata(candidate.metadata, where=where)
    logger.info(
        "Acquired %d images of shape %s from %s", len(candidate.metadata), candidate.images.shape[1:], where
    )
    return candidate


def compute_image_statistics(data: XrayData) -> pd.DataFrame:
    """Per-image pixel statistics (mean, std, range, non-finite count, shape), row-aligned with the metadata."""
    return image_statistics(data.images)


def assign_splits(data: XrayData, split: dict[str, Any]) -> pd.DataFrame:
    """Metadata with a ``split`` column: the data's own split when ``split.strategy`` keeps it, else
    stratified by alloy and thickness bin, grouped by specimen."""
    params = parse_params(SplitParams, split, "split")
    metadata = data.metadata.copy()
    labels, used = assign_split(
        metadata,
        params.strategy,
        fractions=params.fractions,
        min_per_class=params.min_per_class,
        thickness_bins=params.thickness_bins,
        seed=params.seed,
    )
    metadata["split"] = labels.to_numpy()
    logger.info("Split strategy %s (split.strategy: %s)", used, params.strategy)
    return metadata


def validate_dataset(
    metadata: pd.DataFrame, image_stats: pd.DataFrame, validation: dict[str, Any]
) -> dict[str, Any]:
    """Run the pandera schema and the Great Expectations suite; raise before anything reaches model input.

    Data Docs HTML is written to ``validation.data_docs_dir`` whether the suite passes or not, so a failing
    run can be inspected.
    """
    params = parse_params(ValidationParams, validation, "validation")
    validate_metadata(metadata, where="split metadata")
    summary = run_expectations(metadata, image_stats, Path(params.data_docs_dir), params.suite_settings())
    raise_for_failures(summary, where="split metadata + image statistics")
    logger.info(
        "Great Expectations suite passed (imbalance ratio %.1f); Data Docs at %s",
        summary["imbalance_ratio"],
        summary.get("data_docs_index"),
    )
    return summary


def build_model_input(data: XrayData, metadata: pd.DataFrame, validation_report: dict[str, Any]) -> XrayData:
    """The consolidated model input: the validated images with the split-labelled metadata.

    ``validation_report`` is taken only so that this node runs after validation succeeded.
    """
    if not validation_report.get("success", False):
        raise ValueError("model input requested for a dataset that failed validation")
    return XrayData(images=data.images, metadata=metadata.reset_index(drop=True))


def summarise_splits(metadata: pd.DataFrame, split: dict[str, Any]) -> pd.DataFrame:
    """Image counts per alloy and split, the table a reader checks for the tail classes, with the strategy."""
    params = parse_params(SplitParams, split, "split")
    summary = split_summary(metadata, metadata["split"], strategy=resolve_strategy(metadata, params.strategy))
    logger.info("Split counts per alloy:\n%s", summary.to_string())
    return summary.reset_index()
