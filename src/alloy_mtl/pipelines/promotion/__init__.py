"""promotion: register the best model of a training run and run the champion/challenger gate."""

from alloy_mtl.pipelines.promotion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
