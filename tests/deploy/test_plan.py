"""The deployment plan: bad input fails with one line per problem; steps, caching and parameters."""

from __future__ import annotations

import copy
import logging

import pytest
from kedro.pipeline import Pipeline

from alloy_mtl.deploy.errors import DeployError
from alloy_mtl.deploy.plan import build_plan
from tests.deploy.conftest import MINIMAL_CONFIG, node

pytestmark = pytest.mark.filterwarnings("ignore:One or more dataset names contain")


def _pipelines() -> dict[str, Pipeline]:
    main = Pipeline(
        [
            node("params:source", "raw", "acquire"),
            node(["raw", "params:training"], "model", "train", namespace="net"),
            node("model", "report", "evaluate", namespace="net"),
        ]
    )
    gate = Pipeline([node(["report", "params:registry"], "promoted", "promote")])
    return {"main": main, "promotion": gate, "__default__": main}


def _config(**changes: object) -> dict:
    config = copy.deepcopy(MINIMAL_CONFIG)
    config.update(changes)
    return config


def test_unknown_pipeline_is_one_line_naming_it_and_the_known_ones(synthetic):
    with pytest.raises(DeployError) as error:
        build_plan(synthetic(_pipelines()), "nope")
    assert str(error.value) == "unknown pipeline 'nope'; registered pipelines: main, promotion"


def test_every_problem_is_collected_before_failing(synthetic):
    config = _config(
        resources={"acquire": {"cpu_request": "1"}},  # no entry for 'net', and no __default__
        parameters={
            "epochs": {"kedro": "training.epochs", "type": "int"},
            "lr": {"kedro": "training.lr", "type": "float"},
        },
    )
    project = synthetic(_pipelines(), persisted={"model"}, kubeflow=config)  # 'raw' is a memory dataset
    with pytest.raises(DeployError) as error:
        build_plan(project, "main")
    problems = error.value.problems
    assert len(problems) == 3, problems
    assert (
        problems[0]
        == "group 'net' has no entry under resources in kubeflow.yml and there is no __default__ entry"
    )
    assert problems[1].startswith(
        "dataset 'raw' is a memory dataset (not in the catalog) but crosses from step 'acquire' to net"
    )
    assert problems[2] == (
        "pipeline parameter 'lr' overrides Kedro parameter 'training.lr', which the parameters of env 'base' do not define"
    )
    assert str(error.value).startswith("3 problems:\n  - group 'net'")


def test_memory_datasets_inside_one_step_are_fine(synthetic):
    plan = build_plan(synthetic(_pipelines(), persisted={"raw"}), "main")  # 'model' stays inside step 'net'
    assert [step.group for step in plan.steps] == ["acquire", "net"]


def test_config_errors_are_one_line_each_and_name_the_key(synthetic):
    config = _config(storage={"kind": "existing_pvc"}, imagee="typo")
    config["resources"]["__default__"]["gpu"] = "two"
    with pytest.raises(DeployError) as error:
        build_plan(synthetic(_pipelines(), persisted={"raw"}, kubeflow=config), "main")
    text = str(error.value)
    assert "kubeflow.yml: storage: storage.kind existing_pvc needs storage.claim_name" in text
    assert "kubeflow.yml: imagee: Extra inputs are not permitted" in text
    assert all("\n" not in problem for problem in error.value.problems)
    # the resources are checked once the file parses
    good = _config()
    good["resources"]["__default__"]["gpu"] = "two"
    with pytest.raises(DeployError) as error:
        build_plan(synthetic(_pipelines(), persisted={"raw"}, kubeflow=good), "main")
    assert error.value.problems == [
        "kubeflow.yml: resources.__default__.gpu: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_final_step_is_skipped_with_a_log_line_while_its_pipeline_is_not_registered(synthetic, caplog):
    pipelines = _pipelines()
    del pipelines["promotion"]
    config = _config(final_step={"pipeline": "promotion"})
    with caplog.at_level(logging.INFO, logger="alloy_mtl.deploy.plan"):
        plan = build_plan(synthetic(pipelines, persisted={"raw", "report"}, kubeflow=config), "main")
    assert [step.group for step in plan.steps] == ["acquire", "net"]
    assert "Final step skipped: Kedro pipeline 'promotion'" in caplog.text


def test_a_registered_final_pipeline_runs_last_after_every_leaf(synthetic):
    config = _config(final_step={"pipeline": "promotion"})
    plan = build_plan(synthetic(_pipelines(), persisted={"raw", "report"}, kubeflow=config), "main")
    final = plan.steps[-1]
    assert (final.group, final.pipeline, final.nodes, final.parents, final.final) == (
        "promotion",
        "promotion",
        None,
        ("net",),
        True,
    )
    assert plan.step_arguments(final, {}, "RUN")[:4] == ["--env", "base", "--pipeline", "promotion"]
    assert "--nodes" not in plan.step_arguments(final, {}, "RUN")


def test_the_final_step_must_read_persisted_data(synthetic):
    config = _config(final_step={"pipeline": "promotion"})
    with pytest.raises(
        DeployError, match=r"dataset 'report' is a memory dataset .* final step 'promotion' reads it"
    ):
        build_plan(synthetic(_pipelines(), persisted={"raw"}, kubeflow=config), "main")


def test_final_pipeline_inside_the_compiled_one_becomes_one_group_placed_by_the_graph(synthetic):
    pipelines = _pipelines()
    pipelines["all"] = pipelines["main"] + pipelines["promotion"]
    config = _config(final_step={"pipeline": "promotion"})
    plan = build_plan(synthetic(pipelines, persisted={"raw", "report"}, kubeflow=config), "all")
    assert [(s.group, s.nodes, s.parents) for s in plan.steps] == [
        ("acquire", ("acquire",), ()),
        ("net", ("net.train", "net.evaluate"), ("acquire",)),
        ("promotion", ("promote",), ("net",)),
    ]
    assert plan.steps[-1].final and plan.steps[-1].pipeline == "all"


def test_parameters_reach_only_the_steps_that_read_them_with_typed_defaults(synthetic):
    config = _config(
        parameters={
            "epochs": {"kedro": "training.epochs", "type": "int"},
            "source_path": {"kedro": "source.path", "type": "str"},
            "lr": {"kedro": "training.lr", "type": "float", "default": 0.5},
        }
    )
    params = {"training": {"epochs": 3}, "source": {"path": None}}
    plan = build_plan(synthetic(_pipelines(), persisted={"raw"}, kubeflow=config, parameters=params), "main")
    assert [(p.name, p.type, p.default) for p in plan.parameters] == [
        ("epochs", "int", 3),
        ("source_path", "str", ""),  # null in Kedro: the step keeps the configured value
        ("lr", "float", 0.5),
    ]
    assert plan.step("acquire").parameters == ("source_path",)
    assert plan.step("net").parameters == ("epochs", "lr")
    assert plan.step_arguments(plan.step("net"), {"epochs": "E", "lr": "L"}, "RUN") == [
        "--env", "base", "--pipeline", "main", "--nodes", "net.train,net.evaluate",
        "--param", "training.epochs:int=E", "--param", "training.lr:float=L", "--mlflow-run-id", "RUN",
    ]  # fmt: skip


def test_a_default_of_the_wrong_type_is_refused(synthetic):
    project = synthetic(_pipelines(), persisted={"raw"}, parameters={"training": {"epochs": "ten"}})
    with pytest.raises(
        DeployError, match=r"'epochs' is declared int but its default \(training.epochs = 'ten'\)"
    ):
        build_plan(project, "main")


def test_caching_only_where_sound(synthetic):
    config = _config()
    config["resources"]["__default__"]["caching"] = True
    run_scoped = build_plan(
        synthetic(_pipelines(), persisted={"raw"}, kubeflow=copy.deepcopy(config)), "main"
    )
    # a volume made for each run: a cached step would leave it empty
    assert [step.caching for step in run_scoped.steps] == [False, False]
    config["storage"] = {"kind": "existing_pvc", "claim_name": "shared"}
    persistent = build_plan(synthetic(_pipelines(), persisted={"raw"}, kubeflow=config), "main")
    # on a lasting volume only the step that reads nothing from it may be cached
    assert {step.group: step.caching for step in persistent.steps} == {"acquire": True, "net": False}


def test_groups_that_collide_as_task_names_are_refused(synthetic):
    pipeline = Pipeline([node("params:a", "x", "prep_data"), node("x", "y", "prep-data")])
    project = synthetic({"main": pipeline}, persisted={"x"})
    with pytest.raises(
        DeployError, match=r"groups 'prep_data' and 'prep-data' would both be task 'prep-data'"
    ):
        build_plan(project, "main")


def test_a_step_with_several_gpus_gets_one_process_per_gpu(synthetic):
    config = _config()
    config["resources"]["__default__"]["gpu"] = 4
    plan = build_plan(synthetic(_pipelines(), persisted={"raw"}, kubeflow=config), "main")
    net = plan.step("net")
    values = dict.fromkeys(net.parameters, "X")
    assert plan.step_arguments(net, values, "RUN")[-2:] == ["--nproc-per-node", "4"]
    one = build_plan(synthetic(_pipelines(), persisted={"raw"}, kubeflow=_config()), "main")
    assert "--nproc-per-node" not in one.step_arguments(one.step("net"), values, "RUN")
