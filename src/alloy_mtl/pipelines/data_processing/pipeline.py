"""data_processing: acquire (+ ingest report) -> accept -> statistics -> split -> validate -> model input."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.data_processing import nodes


def create_pipeline(**kwargs) -> Pipeline:
    """Build the data_processing pipeline."""
    return Pipeline(
        [
            Node(
                nodes.acquire_dataset,
                inputs=["params:data_source", "params:generation"],
                outputs=["source_candidate", "ingest_report"],
                name="acquire_dataset",
            ),
            Node(
                nodes.accept_dataset,
                inputs=["source_candidate", "ingest_report", "params:data_source"],
                outputs="raw_xray",
                name="accept_dataset",
            ),
            Node(
                nodes.compute_image_statistics,
                "raw_xray",
                "image_statistics",
                name="compute_image_statistics",
            ),
            Node(nodes.assign_splits, ["raw_xray", "params:split"], "split_metadata", name="assign_splits"),
            Node(
                nodes.validate_dataset,
                ["split_metadata", "image_statistics", "params:validation"],
                "validation_report",
                name="validate_dataset",
            ),
            Node(
                nodes.build_model_input,
                ["raw_xray", "split_metadata", "validation_report"],
                "model_input",
                name="build_model_input",
            ),
            Node(
                nodes.summarise_splits,
                ["split_metadata", "params:split"],
                "split_summary",
                name="summarise_splits",
            ),
        ]
    )
