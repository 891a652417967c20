"""tuning: one PBT node per architecture, in the architecture's namespace (like its training)."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.tuning.nodes import tune_architecture


def create_pipeline(architecture: str, **kwargs) -> Pipeline:
    """The tuning pipeline of one architecture: model input -> ``<arch>.pbt_best`` + population plot."""
    template = Pipeline(
        [
            Node(
                tune_architecture,
                inputs=["model_input", "params:training", "params:train_options", "params:tuning"],
                outputs=["pbt_best", "pbt_lineage", "pbt_progress"],
                name="tune",
            )
        ]
    )
    return Pipeline(
        template,
        namespace=architecture,
        inputs={"model_input"},
        parameters={"params:training", "params:tuning"},
    )
