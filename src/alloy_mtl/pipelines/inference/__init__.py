"""inference: predict alloy, thickness and absorption of new images with the champion model."""

from alloy_mtl.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
