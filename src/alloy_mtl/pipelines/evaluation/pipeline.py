"""evaluation: one namespaced pipeline per architecture, plus the cross-architecture comparison."""

from collections.abc import Sequence
from functools import partial

from kedro.pipeline import Node, Pipeline

from alloy_mtl.pipelines.evaluation import nodes


def create_pipeline(architecture: str, **kwargs) -> Pipeline:
    """Metrics and figures of one architecture (namespace = architecture)."""
    template = Pipeline(
        [
            Node(
                nodes.predict_evaluation_set,
                inputs=[
                    "model",
                    "params:data_source",
                    "params:generation",
                    "params:evaluation",
                    "evaluation_set_instrument",
                ],
                outputs="evaluation_set_predictions",
                name="predict_evaluation_set",
            ),
            Node(
                nodes.predict_ood_set,
                inputs=[
                    "model",
                    "params:data_source",
                    "params:generation",
                    "params:evaluation",
                    "evaluation_set_instrument",
                ],
                outputs="ood_predictions",
                name="predict_ood_set",
            ),
            Node(
                nodes.evaluate_architecture,
                inputs=[
                    "test_predictions",
                    "evaluation_set_predictions",
                    "history",
                    "model_input",
                    "training_summary",
                    "params:evaluation",
                    "ood_predictions",
                ],
                outputs=["metrics", "figures"],
                name="evaluate",
            ),
        ]
    )
    return create_instrument_pipeline() + Pipeline(
        template,
        namespace=architecture,
        inputs={"model_input", "evaluation_set_instrument"},
        parameters={"params:evaluation", "params:data_source", "params:generation"},
    )


def create_instrument_pipeline(**kwargs) -> Pipeline:
    """The evaluation set's instrument fitted from its images (``evaluation_set_instrument``), shared by every
    architecture's evaluation (the same node in each, so summed pipelines keep one)."""
    return Pipeline(
        [
            Node(
                nodes.fit_evaluation_set_instrument,
                inputs=["params:data_source", "params:generation", "params:evaluation"],
                outputs="evaluation_set_instrument",
                name="fit_evaluation_set_instrument",
            )
        ]
    )


def create_selection_pipeline(architectures: Sequence[str], **kwargs) -> Pipeline:
    """Every architecture's predictions of the validation set (``<arch>.val_predictions``: the generated one,
    else the validation split) and the weights of the ``ensemble_selected`` row chosen on them
    (``ensemble_selection``)."""
    return Pipeline(
        [
            *[
                Node(
                    nodes.predict_validation,
                    inputs=[
                        f"{arch}.model",
                        "model_input",
                        "params:data_source",
                        "params:generation",
                        "params:evaluation",
                    ],
                    outputs=f"{arch}.val_predictions",
                    name="predict_validation",
                    namespace=arch,
                )
                for arch in architectures
            ],
            Node(
                nodes.choose_ensemble,
                inputs={"evaluation": "params:evaluation"}
                | {arch: f"{arch}.val_predictions" for arch in architectures},
                outputs="ensemble_selection",
                name="choose_ensemble",
            ),
        ]
    )


def _ensemble_inputs(architectures: Sequence[str], predictions: str) -> dict[str, str]:
    return (
        {"evaluation": "params:evaluation"}
        | {arch: f"{arch}.{predictions}" for arch in architectures}
        | {f"{nodes.SUMMARY_PREFIX}{arch}": f"{arch}.training_summary" for arch in architectures}
    )


def create_comparison_pipeline(
    architectures: Sequence[str], with_unknown_materials: bool = False, **kwargs
) -> Pipeline:
    """Physics-limit row, the ensembles (equal-weight soft/hard voting; soft voting weighted as chosen on the
    validation split) and the cross-architecture comparison, with the physics unknown-designation score's row and
    each model's answers with it beside: ``with_unknown_materials`` (``train_all``) reads the unknown_materials
    pipeline's outputs of the same run; alone, the files it last wrote, if any."""
    physics_unknown, report = (
        ("physics_unknown_evaluation", "physics_unknown_ood_report")
        if with_unknown_materials
        else ("physics_unknown_evaluation_if_scored", "physics_unknown_ood_report_if_evaluated")
    )
    return create_selection_pipeline(architectures) + Pipeline(
        [
            Node(
                nodes.answer_with_physics,
                inputs={"physics_unknown": physics_unknown}
                | {
                    f"{arch}{nodes.KNOWN_SUFFIX}": f"{arch}.evaluation_set_predictions"
                    for arch in architectures
                }
                | {f"{arch}{nodes.OOD_SUFFIX}": f"{arch}.ood_predictions" for arch in architectures},
                outputs="physics_unknown_answers",
                name="answer_with_physics",
            ),
            Node(
                nodes.physics_limit_predictions,
                inputs=["model_input", "params:data_source", "params:generation", "params:evaluation"],
                outputs=["physics_limit.test_predictions", "physics_limit.evaluation_set_predictions"],
                name="physics_limit_predictions",
            ),
            Node(
                partial(nodes.evaluate_reference, name="physics_limit"),
                inputs=[
                    "physics_limit.test_predictions",
                    "physics_limit.evaluation_set_predictions",
                    "model_input",
                    "params:evaluation",
                ],
                outputs=["physics_limit.metrics", "physics_limit.figures"],
                name="evaluate_physics_limit",
            ),
            *[
                Node(
                    nodes.ensemble_architectures,
                    inputs=_ensemble_inputs(architectures, predictions),
                    outputs=[f"ensemble_soft.{predictions}", f"ensemble_hard.{predictions}"],
                    name=f"ensemble_{predictions}",
                )
                for predictions in ("test_predictions", "evaluation_set_predictions")
            ],
            *[
                Node(
                    nodes.selected_ensemble,
                    inputs=_ensemble_inputs(architectures, predictions) | {"selection": "ensemble_selection"},
                    outputs=f"ensemble_selected.{predictions}",
                    name=f"ensemble_selected_{predictions}",
                )
                for predictions in ("test_predictions", "evaluation_set_predictions")
            ],
            *[
                Node(
                    partial(nodes.evaluate_reference, name=name),
                    inputs=[
                        f"{name}.test_predictions",
                        f"{name}.evaluation_set_predictions",
                        "model_input",
                        "params:evaluation",
                    ],
                    outputs=[f"{name}.metrics", f"{name}.figures"],
                    name=f"evaluate_{name}",
                )
                for name in ("ensemble_soft", "ensemble_hard", "ensemble_selected")
            ],
            Node(
                nodes.compare_architectures,
                inputs={
                    "physics_metrics": "physics_limit.metrics",
                    "soft_metrics": "ensemble_soft.metrics",
                    "hard_metrics": "ensemble_hard.metrics",
                    "selected_metrics": "ensemble_selected.metrics",
                    "selection": "ensemble_selection",
                    "evaluation": "params:evaluation",
                    "physics_unknown_report": report,
                    "physics_unknown_answers": "physics_unknown_answers",
                }
                | {arch: f"{arch}.metrics" for arch in architectures},
                outputs=["comparison_table", "comparison_markdown", "ap_heatmap"],
                name="compare_architectures",
            ),
        ]
    )
