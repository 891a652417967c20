"""alloy_properties: data -> validation -> split -> study -> report, in its own namespace and parameters."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.alloy_properties.nodes import (
    acquire_alloys,
    featurize_and_split,
    report,
    run,
    validate,
)

NAMESPACE = "alloy_properties"
PARAMS = "params:alloy_properties"


def create_pipeline(**kwargs) -> Pipeline:
    """The study pipeline; its datasets live in the ``alloy_properties`` namespace."""
    template = Pipeline(
        [
            Node(acquire_alloys, inputs=PARAMS, outputs=["raw_alloys", "raw_source"], name="acquire"),
            Node(
                validate,
                inputs=["raw_alloys", "raw_source", PARAMS],
                outputs=["alloys", "validation_report"],
                name="validate",
            ),
            Node(featurize_and_split, inputs=["alloys", PARAMS], outputs="model_input", name="split"),
            Node(
                run, inputs=["model_input", PARAMS], outputs=["runs", "histories", "relations"], name="study"
            ),
            Node(
                report,
                inputs=["runs", "histories", "relations", "validation_report", PARAMS],
                outputs=["study_table", "verdict", "report_figures", "findings"],
                name="report",
            ),
        ]
    )
    return Pipeline(template, namespace=NAMESPACE, parameters={PARAMS})
