"""Node grouping: which nodes share a step, and the step graph that follows from the Kedro graph."""

from __future__ import annotations

import pytest
from kedro.pipeline import Pipeline

from alloy_mtl.deploy.config import GroupingConfig
from alloy_mtl.deploy.errors import DeployError
from alloy_mtl.deploy.grouping import group_pipeline
from tests.deploy.conftest import node

pytestmark = pytest.mark.filterwarnings("ignore:One or more dataset names contain")


def _architectures() -> Pipeline:
    data = Pipeline([node("params:source", "raw", "acquire"), node("raw", "model_input", "build")])
    per_arch = sum(
        (
            Pipeline(
                [
                    node(["model_input", "params:training"], "model", "train"),
                    node(["model", "model_input"], "metrics", "evaluate"),
                ],
                namespace=arch,
                inputs={"model_input"},
                parameters={"params:training"},
            )
            for arch in ("cnn", "mlp")
        ),
        Pipeline([]),
    )
    compare = Pipeline([node(["cnn.metrics", "mlp.metrics"], "table", "compare")])
    return data + per_arch + compare


def test_namespaces_become_one_step_each_and_other_nodes_their_own():
    grouping = group_pipeline(_architectures(), GroupingConfig())
    assert {g.name: g.nodes for g in grouping.groups} == {
        "acquire": ("acquire",),
        "build": ("build",),
        "cnn": ("cnn.train", "cnn.evaluate"),
        "mlp": ("mlp.train", "mlp.evaluate"),
        "compare": ("compare",),
    }
    parents = {g.name: g.parents for g in grouping.groups}
    assert parents == {
        "acquire": (),
        "build": ("acquire",),
        "cnn": ("build",),
        "mlp": ("build",),
        "compare": ("cnn", "mlp"),
    }
    # parents come before children, and the order is the same every time
    assert grouping.names == group_pipeline(_architectures(), GroupingConfig()).names
    assert grouping.names.index("build") < grouping.names.index("cnn") < grouping.names.index("compare")


def test_crossings_name_the_datasets_that_leave_a_step():
    grouping = group_pipeline(_architectures(), GroupingConfig())
    crossing = {c.dataset: (c.producer, c.consumers) for c in grouping.crossings}
    assert crossing == {
        "raw": ("acquire", ("build",)),
        "model_input": ("build", ("cnn", "mlp")),
        "cnn.metrics": ("cnn", ("compare",)),
        "mlp.metrics": ("mlp", ("compare",)),
    }  # cnn.model stays inside step cnn


def test_nodes_win_over_tags_over_namespace_and_pipelines_gather_the_rest():
    pipeline = Pipeline(
        [
            node("params:a", "x", "first", tags=["light"]),
            node("x", "y", "second", tags=["light"]),
            node("y", "z", "third", namespace="ns", tags=["light"]),
            node("z", "w", "fourth"),
        ]
    )
    config = GroupingConfig(nodes={"first": "solo"}, tags={"light": "cpu"})
    grouping = group_pipeline(pipeline, config)
    assert {g.name: g.nodes for g in grouping.groups} == {
        "solo": ("first",),
        "cpu": ("second", "ns.third"),
        "fourth": ("fourth",),
    }
    by_pipeline = group_pipeline(
        pipeline,
        GroupingConfig(pipelines={"tail": "finish"}),
        {"tail": pipeline.only_nodes("ns.third", "fourth")},
    )
    # a namespaced node keeps its namespace's step; un-namespaced nodes of the pipeline share one
    assert {g.name: g.nodes for g in by_pipeline.groups}["finish"] == ("fourth",)
    assert {g.name: g.nodes for g in by_pipeline.groups}["ns"] == ("ns.third",)


def test_by_node_gives_one_step_per_node():
    grouping = group_pipeline(_architectures(), GroupingConfig(by="node"))
    assert len(grouping.groups) == len(_architectures().nodes)


@pytest.mark.filterwarnings("ignore:Namespace 'ns' is interrupted")
def test_a_grouping_that_makes_a_cycle_fails_naming_the_groups():
    pipeline = Pipeline(
        [
            node("params:a", "ns.x", "a", namespace="ns"),
            node("ns.x", "y", "middle"),
            node("y", "ns.z", "b", namespace="ns"),
        ]
    )
    with pytest.raises(DeployError, match=r"cycle between groups ns, middle"):
        group_pipeline(pipeline, GroupingConfig())


def test_ambiguous_tags_and_unknown_pipelines_are_reported_together():
    pipeline = Pipeline([node("params:a", "x", "a", tags=["t1", "t2"])])
    config = GroupingConfig(tags={"t1": "g1", "t2": "g2"}, pipelines={"nope": "g"})
    with pytest.raises(DeployError) as error:
        group_pipeline(pipeline, config, {})
    assert error.value.problems == [
        "grouping.pipelines names pipeline 'nope', which is not registered",
        "node 'a' has tags that map it to several groups: g1, g2",
    ]
