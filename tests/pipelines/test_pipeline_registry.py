"""The registered pipelines: names, namespaces and the data -> train -> evaluate chain."""

from __future__ import annotations

from alloy_mtl.pipeline_registry import register_pipelines
from alloy_mtl.pipelines.training import ARCHITECTURES


def test_every_architecture_has_its_namespaced_train_pipeline():
    pipelines = register_pipelines()
    for arch in ARCHITECTURES:
        nodes = {node.name for node in pipelines[f"train_{arch}"].nodes}
        assert nodes == {
            f"{arch}.train",
            f"{arch}.predict_evaluation_set",
            f"{arch}.predict_ood_set",
            f"{arch}.evaluate",
            "fit_evaluation_set_instrument",
        }
        outputs = pipelines[f"train_{arch}"].all_outputs()
        assert {f"{arch}.model", f"{arch}.history", f"{arch}.metrics", f"{arch}.figures"} <= outputs


def test_train_all_runs_from_raw_data_to_the_comparison():
    pipelines = register_pipelines()
    train_all = pipelines["train_all"]
    assert pipelines["__default__"] is train_all
    # nothing but parameters comes from outside: the pipeline builds every dataset it reads
    assert {name for name in train_all.inputs() if not name.startswith("params:")} == set()
    assert {"model_input", "comparison_table", "comparison_markdown", "ap_heatmap"} <= train_all.all_outputs()
    # all architectures share the one model input and the shared training parameters
    train_nodes = [n for n in train_all.nodes if n.name.endswith(".train")]
    assert len(train_nodes) == len(ARCHITECTURES)
    assert all({"model_input", "params:training"} <= set(n.inputs) for n in train_nodes)


def test_the_promotion_gate_keeps_its_former_name_registry_as_an_alias():
    pipelines = register_pipelines()
    assert [node.name for node in pipelines["promotion"].nodes] == ["promote_champion"]
    assert pipelines["registry"] is pipelines["promotion"]
    assert "promote_champion" in {node.name for node in pipelines["train_all"].nodes}


def test_the_robustness_suite_runs_over_the_trained_models_and_inside_train_all():
    pipelines = register_pipelines()
    suite = pipelines["robustness"]
    external = {name for name in suite.inputs() if not name.startswith("params:")}
    # the ensemble's weights are chosen on the validation split of the model input, as in the evaluation
    assert external == {f"{arch}.model" for arch in ARCHITECTURES} | {"model_input"}
    assert {
        "robustness_table",
        "robustness_markdown",
        "robustness_figure",
        "fnn.robustness",
        "ensemble_selection",
        "ensemble_selected.robustness",
    } <= suite.all_outputs()
    assert "choose_ensemble" in {node.name for node in pipelines["evaluation"].nodes}
    # train_all ends with the suite, and the gate (which decides on it) waits for every model's scores
    train_all = pipelines["train_all"]
    assert "report_robustness" in {node.name for node in train_all.nodes}
    gate = next(node for node in train_all.nodes if node.name == "promote_champion")
    assert {f"{arch}.robustness" for arch in ARCHITECTURES} <= set(gate.inputs)
    # and is handed the run's suite predictions, which a challenger of this run reuses once a sample agrees
    assert {f"{arch}.robustness_predictions" for arch in ARCHITECTURES} <= set(gate.inputs)
    # it compares champion and challenger on the run's images: the suite's (regenerated), else the test split
    assert {"model_input", "robustness_instruments", "params:evaluation"} <= set(gate.inputs)
    alone = pipelines["promotion"].nodes[0]
    assert {"model_input", "robustness_instruments_if_fitted"} <= set(alone.inputs)
    assert set(gate.outputs) == {"registry_decision", "registry_report"}
