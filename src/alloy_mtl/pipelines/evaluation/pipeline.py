"""evaluation: one namespaced pipeline per architecture, plus the cross-architecture comparison."""

from collections.abc import Sequence
from functools import partial

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.evaluation import nodes


def create_pipeline(architecture: str, **kwargs) -> Pipeline:
    """Metrics and figures of one architecture (namespace = architecture)."""
    template = Pipeline(
        [
            Node(
                nodes.evaluate_architecture,
                inputs=[
                    "test_predictions",
                    "history",
                    "model_input",
                    "training_summary",
                    "params:evaluation",
                ],
                outputs=["metrics", "figures"],
                name="evaluate",
            )
        ]
    )
    return Pipeline(
        template, namespace=architecture, inputs={"model_input"}, parameters={"params:evaluation"}
    )


def create_comparison_pipeline(architectures: Sequence[str], **kwargs) -> Pipeline:
    """Physics-limit row, soft/hard-voting ensembles and the cross-architecture comparison."""
    return Pipeline(
        [
            Node(
                nodes.physics_limit_predictions,
                inputs=["model_input", "params:data_source", "params:generation"],
                outputs="physics_limit.test_predictions",
                name="physics_limit_predictions",
            ),
            Node(
                partial(nodes.evaluate_reference, name="physics_limit"),
                inputs=["physics_limit.test_predictions", "model_input", "params:evaluation"],
                outputs=["physics_limit.metrics", "physics_limit.figures"],
                name="evaluate_physics_limit",
            ),
            Node(
                nodes.ensemble_architectures,
                inputs={arch: f"{arch}.test_predictions" for arch in architectures},
                outputs=["ensemble_soft.test_predictions", "ensemble_hard.test_predictions"],
                name="ensemble_architectures",
            ),
            *[
                Node(
                    partial(nodes.evaluate_reference, name=name),
                    inputs=[f"{name}.test_predictions", "model_input", "params:evaluation"],
                    outputs=[f"{name}.metrics", f"{name}.figures"],
                    name=f"evaluate_{name}",
                )
                for name in ("ensemble_soft", "ensemble_hard")
            ],
            Node(
                nodes.compare_architectures,
                inputs={
                    "physics_metrics": "physics_limit.metrics",
                    "soft_metrics": "ensemble_soft.metrics",
                    "hard_metrics": "ensemble_hard.metrics",
                    "evaluation": "params:evaluation",
                }
                | {arch: f"{arch}.metrics" for arch in architectures},
                outputs=["comparison_table", "comparison_markdown", "ap_heatmap"],
                name="compare_architectures",
            ),
        ]
    )
