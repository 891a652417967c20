"""One modular training pipeline per architecture (namespace = architecture name)."""

from alloy_mtl.pipelines.training.pipeline import ARCHITECTURES, create_pipeline

__all__ = ["ARCHITECTURES", "create_pipeline"]
