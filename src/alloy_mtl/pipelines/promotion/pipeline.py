"""promotion: the gate alone (over already-logged runs) or at the end of ``train_all``."""

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.promotion.nodes import promote_champion


def create_pipeline(after: Sequence[str] = (), **kwargs) -> Pipeline:
    """The gate node; ``after`` names datasets it must wait for (the metrics of every model in ``train_all``)."""
    return Pipeline(
        [
            Node(
                promote_champion,
                inputs=["params:registry", *after],
                outputs="registry_decision",
                name="promote_champion",
            )
        ]
    )
