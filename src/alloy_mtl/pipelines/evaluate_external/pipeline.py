"""evaluate_external: read the lab's labelled folder, predict it with every model and the physics limit, report."""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.evaluate_external import nodes


def create_pipeline(architectures: Sequence[str], **kwargs) -> Pipeline:
    """Score every trained ``<arch>.model`` (an architecture not trained is left out) on ``external.path``, with
    the ensemble weights the last evaluation chose (``ensemble_selection``, if any)."""
    return Pipeline(
        [
            Node(
                nodes.read_external_folder, "params:external", "external_images", name="read_external_folder"
            ),
            Node(
                nodes.physics_limit_external,
                inputs=["external_images", "params:generation"],
                outputs=["physics_limit.external_predictions", "external_instrument"],
                name="physics_limit_external",
            ),
            *[
                Node(
                    nodes.predict_external,
                    inputs=[f"{arch}.trained_model", "external_images", "external_instrument"],
                    outputs=f"{arch}.external_predictions",
                    name="predict_external",
                    namespace=arch,
                )
                for arch in architectures
            ],
            *[
                Node(
                    nodes.check_external_conformal,
                    inputs=[
                        f"{arch}.trained_model",
                        f"{arch}.external_predictions",
                        "params:external",
                        "params:evaluation",
                    ],
                    outputs=f"{arch}.external_conformal",
                    name="check_external_conformal",
                    namespace=arch,
                )
                for arch in architectures
            ],
            Node(
                nodes.report_external_conformal,
                inputs={"external": "params:external"}
                | {arch: f"{arch}.external_conformal" for arch in architectures},
                outputs="external_conformal_markdown",
                name="report_external_conformal",
            ),
            Node(
                nodes.report_external,
                inputs={
                    "external": "params:external",
                    "evaluation": "params:evaluation",
                    "generation": "params:generation",
                    "physics_limit": "physics_limit.external_predictions",
                    "instruments": "external_instrument",
                    "ensemble_selection": "ensemble_selection_if_chosen",
                }
                | {arch: f"{arch}.external_predictions" for arch in architectures},
                outputs=["external_comparison_table", "external_comparison_markdown"],
                name="report_external",
            ),
        ],
        tags=["evaluate_external"],
    )
