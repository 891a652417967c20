"""unknown_materials: fit the physics unknown-designation score (outlier exposure on the estimator's fits)."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.unknown_materials.nodes import evaluate_unknown_materials, fit_unknown_materials


def create_pipeline(**kwargs) -> Pipeline:
    """Simulate known and exposure designations at the project's instrument and fit the score and its threshold
    reference (folder inference reads it: ``physics_unknown_score_if_fitted``), then measure it on the
    evaluation's generated sets (``physics_unknown_evaluation``, which each model's evaluation combines with its
    own answers, and ``physics_unknown_ood_report``)."""
    return Pipeline(
        [
            Node(
                fit_unknown_materials,
                inputs=["params:generation", "params:unknown_materials"],
                outputs=["physics_unknown_score", "physics_unknown_summary"],
                name="fit_unknown_materials",
            ),
            Node(
                evaluate_unknown_materials,
                inputs=[
                    "physics_unknown_score",
                    "params:generation",
                    "params:evaluation",
                ],
                outputs=["physics_unknown_evaluation", "physics_unknown_ood_report"],
                name="evaluate_unknown_materials",
            ),
        ]
    )
