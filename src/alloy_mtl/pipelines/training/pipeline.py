"""training: a template pipeline instantiated once per architecture namespace."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.mtl.models.backbones import ARCHITECTURES, BACKBONES
from alloy_mtl.pipelines.training.nodes import train_architecture

__all__ = ["ARCHITECTURES", "START_PRIORITY", "create_pipeline"]

START_PRIORITY: dict[str, int] = {arch: BACKBONES.info(arch)["start_priority"] for arch in ARCHITECTURES}
"""Which training the default runner starts first when more are ready than it has workers (highest first),
as registered with each backbone; tagged ``priority_<n>`` on the node."""


def create_pipeline(architecture: str, **kwargs) -> Pipeline:
    """The training pipeline of one architecture; datasets and ``train_options`` live in its namespace."""
    template = Pipeline(
        [
            Node(
                train_architecture,
                inputs=[
                    "model_input",
                    "params:training",
                    "params:train_options",
                    "params:data_source",
                    "params:generation",
                ],
                outputs=["model", "history", "test_predictions", "training_summary"],
                name="train",
                tags=["training", f"priority_{START_PRIORITY.get(architecture, 0)}"],
            )
        ]
    )
    return Pipeline(
        template,
        namespace=architecture,
        inputs={"model_input"},
        parameters={"params:training", "params:data_source", "params:generation"},
    )
