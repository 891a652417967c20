"""inference: folder of PNG/TIFF radiographs -> predictions CSV with the registered champion."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.inference.nodes import check_failures, predict_folder


def create_pipeline(**kwargs) -> Pipeline:
    """Predict, save the CSV, then fail the run if any file could not be predicted."""
    return Pipeline(
        [
            Node(
                predict_folder,
                inputs=["params:inference", "params:registry.model_name"],
                outputs="inference_predictions",
                name="predict_folder",
            ),
            Node(check_failures, inputs="inference_predictions", outputs=None, name="check_failures"),
        ]
    )
