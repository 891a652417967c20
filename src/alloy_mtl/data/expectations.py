"""Great Expectations suite over the metadata joined with per-image statistics, with Data Docs.

The suite runs in an ephemeral (in-memory) GX context: nothing is written except the Data Docs site under
``docs_dir``. Usage statistics are disabled (``GX_ANALYTICS_ENABLED=false`` and the context config).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.params import ValidationParams

logger = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = ValidationParams().suite_settings()
"""Parameters of :func:`run_expectations`; a ``params`` dict overrides any of them."""


def expectation_table(metadata: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Metadata and per-image statistics side by side (row-aligned), plus split-leak helper columns.

    With a ``split`` column, ``specimen_n_splits`` and ``image_n_splits`` count the distinct splits of each
    row's specimen and image id; both must be 1.
    """
    if len(metadata) != len(stats):
        raise ValueError(f"expectation_table: {len(metadata)} metadata rows but {len(stats)} statistics rows")
    table = pd.concat([metadata.reset_index(drop=True), stats.reset_index(drop=True)], axis=1)
    if "split" in table.columns:
        table["specimen_n_splits"] = table.groupby("specimen_id")["split"].transform("nunique")
        table["image_n_splits"] = table.groupby("image_id")["split"].transform("nunique")
    return table


def run_expectations(
    metadata: pd.DataFrame, stats: pd.DataFrame, docs_dir: Path, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate the dataset with the Great Expectations suite and build Data Docs under ``docs_dir``.

    Expectations: every required alloy present; thickness and absorption within the physical ranges
    (missing values are allowed); no NaN/inf pixel; one image shape; unique image ids; and, when a ``split``
    column is present, no specimen or image in two splits.

    Args:
        metadata: metadata table (data contract), one row per image.
        stats: :func:`alloy_mtl.data.image_stats.image_statistics` of the images, same row order.
        docs_dir: Data Docs site directory (its ``index.html`` is the entry page).
        params: overrides of :data:`DEFAULT_PARAMS`.

    Returns:
        JSON-able summary: ``success``, ``expectations`` (one dict per expectation: ``expectation``,
        ``column``, ``kwargs``, ``success``, ``observed_value``, ``unexpected_count``,
        ``partial_unexpected_list``, ``unexpected_image_ids``),
        ``class_counts``, ``imbalance_ratio`` (max/min class count; ``None`` when a class is empty),
        ``n_images`` and ``data_docs_index``.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    settings = {**DEFAULT_PARAMS, **(params or {})}
    table = expectation_table(metadata, stats)
    docs_dir = Path(docs_dir).resolve()
    context = gx.get_context(mode="ephemeral", project_config=_context_config(docs_dir))
    batch = (
        context.data_sources.add_pandas("xray")
        .add_dataframe_asset("dataset")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=settings["suite_name"]))
    for expectation in _expectations(gx, table, settings):
        suite.add_expectation(expectation)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{settings['suite_name']}_validation", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{settings['suite_name']}_checkpoint",
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format="SUMMARY",
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": table})
    summary = _summarise(result, table, settings, docs_dir)
    logger.info(
        "Expectation suite %s: success=%s, %d failed, Data Docs %s",
        settings["suite_name"],
        summary["success"],
        sum(not e["success"] for e in summary["expectations"]),
        summary["data_docs_index"],
    )
    return summary


def raise_for_failures(summary: Mapping[str, Any], where: str) -> None:
    """Raise :class:`DataValidationError` listing every failed expectation of a :func:`run_expectations` summary."""
    failed = [e for e in summary["expectations"] if not e["success"]]
    if summary["success"] and not failed:
        return
    lines = [f"{where}: {len(failed)} expectation(s) failed (Data Docs: {summary.get('data_docs_index')})"]
    for e in failed:
        detail = f"observed {e['observed_value']!r}" if e["observed_value"] is not None else ""
        if e["unexpected_count"]:
            detail = (
                f"{e['unexpected_count']} unexpected value(s), e.g. {e['partial_unexpected_list'][:5]}"
                f" at image_id {e['unexpected_image_ids'][:5]}"
            )
        lines.append(f"  {e['expectation']} on column '{e['column']}' ({e['kwargs']}): {detail}".rstrip(": "))
    raise DataValidationError("\n".join(lines))


def _context_config(docs_dir: Path) -> Any:
    """In-memory stores, one local Data Docs site at ``docs_dir``, no analytics, no progress bars."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    return DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={"local_site": site},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )


def _expectations(gx: Any, table: pd.DataFrame, settings: Mapping[str, Any]) -> list[Any]:
    """The suite's expectations for ``table``."""
    e = gx.expectations
    t_min, t_max = settings["thickness_range_mm"]
    a_min, a_max = settings["absorption_range_per_cm"]
    suite = [
        e.ExpectColumnDistinctValuesToContainSet(column="alloy", value_set=list(settings["required_alloys"])),
        e.ExpectColumnValuesToBeBetween(column="thickness_mm", min_value=t_min, max_value=t_max),
        e.ExpectColumnValuesToBeBetween(column="absorption", min_value=a_min, max_value=a_max),
        e.ExpectColumnValuesToBeBetween(column="n_nonfinite", min_value=0, max_value=0),
        e.ExpectColumnUniqueValueCountToBeBetween(column="shape", min_value=1, max_value=1),
        e.ExpectColumnValuesToBeUnique(column="image_id"),
    ]
    if "split" in table.columns:
        suite += [
            e.ExpectColumnValuesToBeBetween(column="specimen_n_splits", min_value=1, max_value=1),
            e.ExpectColumnValuesToBeBetween(column="image_n_splits", min_value=1, max_value=1),
        ]
    return suite


def _summarise(
    result: Any, table: pd.DataFrame, settings: Mapping[str, Any], docs_dir: Path
) -> dict[str, Any]:
    """A JSON-able digest of a checkpoint result."""
    expectations = []
    for validation in result.run_results.values():
        for r in validation.results:
            config, details = r.expectation_config, r.result or {}
            kwargs = {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id")}
            expectations.append(
                {
                    "expectation": config.type,
                    "column": config.kwargs.get("column"),
                    "kwargs": kwargs,
                    "success": bool(r.success),
                    "observed_value": details.get("observed_value"),
                    "unexpected_count": details.get("unexpected_count", 0),
                    "partial_unexpected_list": details.get("partial_unexpected_list", []),
                    "unexpected_image_ids": [
                        table["image_id"].iloc[i] for i in details.get("partial_unexpected_index_list") or []
                    ],
                }
            )
    alloys = list(settings["required_alloys"]) + sorted(
        set(table["alloy"].astype(str)) - set(settings["required_alloys"])
    )
    counts = table["alloy"].astype(str).value_counts().reindex(alloys, fill_value=0)
    summary = {
        "success": bool(result.success),
        "n_images": len(table),
        "expectations": expectations,
        "class_counts": {alloy: int(n) for alloy, n in counts.items()},
        "imbalance_ratio": float(counts.max() / counts.min()) if counts.min() > 0 else None,
        "data_docs_index": str(docs_dir / "index.html"),
    }
    return json.loads(json.dumps(summary, default=_jsonable))


def _jsonable(value: Any) -> Any:
    """Fallback for numpy scalars and other odd values in GX results."""
    if hasattr(value, "item"):
        value = value.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    return str(value)
