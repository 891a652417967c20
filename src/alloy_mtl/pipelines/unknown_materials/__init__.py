"""unknown_materials: the physics unknown-designation score that folder inference applies beside the models'."""

from alloy_mtl.pipelines.unknown_materials.pipeline import create_pipeline

__all__ = ["create_pipeline"]
