"""promotion: the gate alone (over already-logged runs) or at the end of ``train_all``."""

from collections.abc import Mapping

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.promotion.nodes import promote_champion


def create_pipeline(
    after: Mapping[str, str] | None = None, instruments: str = "robustness_instruments_if_fitted", **kwargs
) -> Pipeline:
    """The gate node; ``after`` maps keyword inputs to datasets it must wait for (in ``train_all``: every
    model's metrics and suite scores, and its suite predictions, ``<arch>_suite_predictions``, which a
    challenger of the run reuses), ``instruments`` names the suite conditions' fitted instruments (inside
    ``train_all``: the suite's own output; alone: the file a suite wrote, if any)."""
    return Pipeline(
        [
            Node(
                promote_champion,
                inputs={
                    "registry": "params:registry",
                    "data_source": "params:data_source",
                    "generation": "params:generation",
                    "evaluation": "params:evaluation",
                    "model_input": "model_input",
                    "instruments": instruments,
                    **(after or {}),
                },
                outputs=["registry_decision", "registry_report"],
                name="promote_champion",
            )
        ]
    )
