"""training: a template pipeline instantiated once per architecture namespace."""

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.training.nodes import train_architecture

ARCHITECTURES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "vgg16", "efficientnet_b0", "fnn")

START_PRIORITY: dict[str, int] = {
    "efficientnet_b0": 6,
    "resnet18": 5,
    "resnet34": 4,
    "vgg16": 3,
    "resnet50": 2,
    "fnn": 1,
}
"""Which training the default runner (``alloy_mtl.runner.ModelParallelRunner``) starts first when more are
ready than it has workers: with the CPU default's costs (one thread each: EfficientNet-B0 ~300 s, VGG16 ~280,
the ResNets ~210, the FNN ~70), this order lets two workers finish train_all's trainings within a few
seconds of each other. Tagged ``priority_<n>`` on the node; another order changes the wall time only."""


def create_pipeline(architecture: str, **kwargs) -> Pipeline:
    """The training pipeline of one architecture; datasets and ``train_options`` live in its namespace."""
    template = Pipeline(
        [
            Node(
                train_architecture,
                inputs=["model_input", "params:training", "params:train_options"],
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
        parameters={"params:training"},
    )
