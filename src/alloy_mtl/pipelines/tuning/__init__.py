"""Population Based Training per architecture (namespace = architecture name): ``tune_<arch>``."""

from alloy_mtl.pipelines.tuning.pipeline import create_pipeline

__all__ = ["create_pipeline"]
