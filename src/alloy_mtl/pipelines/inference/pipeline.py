"""inference: folder of PNG/TIFF radiographs -> predictions CSV with the registered champion, and a drift report."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.inference.nodes import (
    check_designations,
    check_drift,
    check_failures,
    fit_unit_conformal,
    predict_folder,
    read_inputs,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Read the folder once, the drift reference and the labelled folder the conformal sets are refitted on (a bad
    one stops the run before anything is written), refit the sets there (where one is given), score the folder
    with the physics unknown-designation score (where ``unknown_materials`` has fitted one), predict and save
    the CSV, check every batch for instrument drift, then fail the run if any file could not be
    predicted (or on a drift alarm where ``inference.drift.fail_on_alarm`` is set)."""
    return Pipeline(
        [
            Node(
                read_inputs,
                inputs=[
                    "params:inference",
                    "params:inference.drift",
                    "params:registry.model_name",
                    "params:generation",
                    "params:evaluation",
                    "params:inference.unit_conformal",
                ],
                outputs=["inference_images", "inference_drift_reference", "inference_labelled_images"],
                name="read_inputs",
            ),
            Node(
                fit_unit_conformal,
                inputs=[
                    "inference_labelled_images",
                    "params:inference",
                    "params:inference.unit_conformal",
                    "params:registry.model_name",
                ],
                outputs=["inference_unit_conformal", "inference_unit_conformal_markdown"],
                name="fit_unit_conformal",
            ),
            Node(
                check_designations,
                inputs=[
                    "inference_images",
                    "physics_unknown_score_if_fitted",
                    "params:inference",
                    "params:registry.model_name",
                    "params:generation",
                ],
                outputs="inference_designation_scores",
                name="check_designations",
            ),
            Node(
                predict_folder,
                inputs=[
                    "inference_images",
                    "inference_designation_scores",
                    "inference_unit_conformal",
                    "params:inference",
                    "params:registry.model_name",
                ],
                outputs="inference_predictions",
                name="predict_folder",
            ),
            Node(
                check_drift,
                inputs=["inference_images", "inference_drift_reference"],
                outputs=["inference_drift_table", "inference_drift_markdown"],
                name="check_drift",
            ),
            Node(
                check_failures,
                inputs=["inference_predictions", "inference_drift_table", "params:inference.drift"],
                outputs=None,
                name="check_failures",
            ),
        ]
    )
