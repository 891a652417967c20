"""evaluate_external: every trained model, the ensembles and the physics limit on a lab's labelled folder."""

from alloy_mtl.pipelines.evaluate_external.pipeline import create_pipeline

__all__ = ["create_pipeline"]
