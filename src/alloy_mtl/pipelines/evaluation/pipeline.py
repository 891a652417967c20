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
                nodes.predict_evaluation_set,
                inputs=["model", "params:data_source", "params:generation", "params:evaluation"],
                outputs="evaluation_set_predictions",
                name="predict_evaluation_set",
            ),
            Node(
                nodes.evaluate_architecture,
                inputs=[
                    "test_predictions",
                    "evaluation_set_predictions",
                    "history",
                    "model_input",
                    "training_summary",
                    "params:evaluation",
                ],
                outputs=["metrics", "figures"],
                name="evaluate",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=architecture,
        inputs={"model_input"},
        parameters={"params:evaluation", "params:data_source", "params:generation"},
    )


def create_comparison_pipeline(architectures: Sequence[str], **kwargs) -> Pipeline:
    """Physics-limit row, soft/hard-voting ensembles and the cross-architecture comparison."""
    return Pipeline(
        [
            Node(
                nodes.physics_limit_predictions,
                inputs=["model_input", "params:data_source", "params:generation", "params:evaluation"],
                outputs=["physics_limit.test_predictions", "physics_limit.evaluation_set_predictions"],
                name="physics_limit_predictions",
            ),
            Node(
                partial(nodes.evaluate_reference, name="physics_limit"),
                inputs=[
                    "physics_limit.test_predictions",
                    "physics_limit.evaluation_set_predictions",
                    "model_input",
                    "params:evaluation",
                ],
                outputs=["physics_limit.metrics", "physics_limit.figures"],
                name="evaluate_physics_limit",
            ),
            *[
                Node(
                    nodes.ensemble_architectures,
                    inputs={"evaluation": "params:evaluation"}
                    | {arch: f"{arch}.{predictions}" for arch in architectures}
                    | {f"{nodes.SUMMARY_PREFIX}{arch}": f"{arch}.training_summary" for arch in architectures},
                    outputs=[f"ensemble_soft.{predictions}", f"ensemble_hard.{predictions}"],
                    name=f"ensemble_{predictions}",
                )
                for predictions in ("test_predictions", "evaluation_set_predictions")
            ],
            *[
                Node(
                    partial(nodes.evaluate_reference, name=name),
                    inputs=[
                        f"{name}.test_predictions",
                        f"{name}.evaluation_set_predictions",
                        "model_input",
                        "params:evaluation",
                    ],
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
