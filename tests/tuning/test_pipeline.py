"""tune_<arch> and tune_all are registered, wire only the PBT node, and stay out of train_all."""

from __future__ import annotations

from alloy_mtl.pipeline_registry import register_pipelines
from alloy_mtl.pipelines.training import ARCHITECTURES


def test_tune_pipelines_are_registered_and_not_part_of_train_all():
    pipelines = register_pipelines()
    assert {f"tune_{arch}" for arch in ARCHITECTURES} | {"tune_all"} <= set(pipelines)
    assert [node.name for node in pipelines["tune_fnn"].nodes] == ["fnn.tune"]
    assert pipelines["tune_fnn"].inputs() == {
        "model_input",
        "params:training",
        "params:fnn.train_options",
        "params:tuning",
    }
    assert pipelines["tune_fnn"].outputs() == {"fnn.pbt_best", "fnn.pbt_lineage", "fnn.pbt_progress"}
    assert len(pipelines["tune_all"].nodes) == len(ARCHITECTURES)
    assert not any(node.name.endswith(".tune") for node in pipelines["train_all"].nodes)
