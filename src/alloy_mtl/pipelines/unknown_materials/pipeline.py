"""unknown_materials: fit the physics unknown-designation score (outlier exposure on the estimator's fits)."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.unknown_materials.nodes import fit_unknown_materials


def create_pipeline(**kwargs) -> Pipeline:
    """Simulate known and exposure designations at the project's instrument and fit the score and its threshold
    reference; folder inference reads it (``physics_unknown_score_if_fitted``)."""
    return Pipeline(
        [
            Node(
                fit_unknown_materials,
                inputs=["params:generation", "params:unknown_materials"],
                outputs=["physics_unknown_score", "physics_unknown_summary"],
                name="fit_unknown_materials",
            )
        ]
    )
