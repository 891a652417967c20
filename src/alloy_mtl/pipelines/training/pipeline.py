"""training: a template pipeline instantiated once per architecture namespace."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.training.nodes import train_architecture

ARCHITECTURES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "vgg16", "efficientnet_b0", "fnn")


def create_pipeline(architecture: str, **kwargs) -> Pipeline:
    """The training pipeline of one architecture; datasets and ``train_options`` live in its namespace."""
    template = Pipeline(
        [
            Node(
                train_architecture,
                inputs=["model_input", "params:training", "params:train_options"],
                outputs=["model", "history", "test_predictions", "training_summary"],
                name="train",
            )
        ]
    )
    return Pipeline(
        template,
        namespace=architecture,
        inputs={"model_input"},
        parameters={"params:training"},
    )
