"""Per-architecture evaluation, the physics ceiling, ensembles and the cross-architecture comparison."""

from alloy_mtl.pipelines.evaluation.pipeline import (
    create_comparison_pipeline,
    create_pipeline,
    create_selection_pipeline,
)

__all__ = ["create_comparison_pipeline", "create_pipeline", "create_selection_pipeline"]
