"""promotion: the gate alone (over already-logged runs) or at the end of ``train_all``."""

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.promotion.nodes import promote_champion


def create_pipeline(
    after: Sequence[str] = (), instruments: str = "robustness_instruments_if_fitted", **kwargs
) -> Pipeline:
    """The gate node; ``after`` names datasets it must wait for (the metrics of every model in ``train_all``),
    ``instruments`` the suite conditions' fitted instruments (inside ``train_all``: the suite's own output;
    alone: the file a suite wrote, if any)."""
    return Pipeline(
        [
            Node(
                promote_champion,
                inputs=[
                    "params:registry",
                    "params:data_source",
                    "params:generation",
                    "params:evaluation",
                    "model_input",
                    instruments,
                    *after,
                ],
                outputs=["registry_decision", "registry_report"],
                name="promote_champion",
            )
        ]
    )
