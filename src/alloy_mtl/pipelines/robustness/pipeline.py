"""robustness: the suite's images, every model's predictions of them, the physics limit and the report."""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.robustness import nodes


def create_pipeline(architectures: Sequence[str], **kwargs) -> Pipeline:
    """Score the trained ``<arch>.model`` of every architecture on the robustness suite.

    Reads ``ensemble_selection`` (the ensemble's weights chosen on the validation split; the registry's
    ``robustness`` pipeline includes the evaluation nodes that choose them). Outputs ``robustness_table`` /
    ``robustness_markdown`` / ``robustness_figure`` and ``<model>.robustness`` (MLflow metrics
    ``robustness.<condition>.<metric>`` on each model's run).
    """
    models = [*architectures, nodes.ENSEMBLE_ROW, nodes.SELECTED_ROW, nodes.PHYSICS_ROW]
    # One tag for every node, so a Kubeflow compile keeps the suite in one step (its images are never written).
    return Pipeline(
        [
            Node(
                nodes.simulate_conditions,
                inputs=["params:data_source", "params:generation", "params:evaluation"],
                outputs="robustness_images",
                name="simulate_robustness_conditions",
            ),
            *[
                Node(
                    nodes.predict_conditions,
                    inputs=[f"{arch}.model", "robustness_images", "robustness_instruments"],
                    outputs=f"{arch}.robustness_predictions",
                    name="predict_robustness",
                    namespace=arch,
                )
                for arch in architectures
            ],
            Node(
                nodes.physics_limit_conditions,
                inputs=["robustness_images", "params:generation"],
                outputs=[f"{nodes.PHYSICS_ROW}.robustness_predictions", "robustness_instruments"],
                name="physics_limit_robustness",
            ),
            Node(
                nodes.report_robustness,
                inputs={
                    "evaluation": "params:evaluation",
                    "generation": "params:generation",
                    "physics_limit": "physics_limit.robustness_predictions",
                    "ensemble_selection": "ensemble_selection",
                }
                | {arch: f"{arch}.robustness_predictions" for arch in architectures},
                outputs={
                    "table": "robustness_table",
                    "markdown": "robustness_markdown",
                    "figure": "robustness_figure",
                }
                | {model: f"{model}.robustness" for model in models},
                name="report_robustness",
            ),
        ],
        tags=["robustness"],
    )
