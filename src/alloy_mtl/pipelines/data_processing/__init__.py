"""Acquire (generate or ingest), validate, split and consolidate the X-ray dataset."""

from alloy_mtl.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
