"""alloy_properties: the STL vs MTL study on tabular alloy data (Kang 2025)."""

from alloy_mtl.pipelines.alloy_properties.pipeline import create_pipeline

__all__ = ["create_pipeline"]
