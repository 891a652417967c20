"""robustness: every trained model scored on the same specimens re-imaged under named instrument conditions."""

from alloy_mtl.pipelines.robustness.pipeline import create_pipeline

__all__ = ["create_pipeline"]
