"""The typed training parameters: defaults in one place, dotted flattening, YAML round trip, PBT's optimizer swap."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from alloy_mtl.config import ParameterError, flatten, to_yaml
from alloy_mtl.mtl.optim.optimizers import build_optimizer, rebuild_optimizer
from alloy_mtl.mtl.params import TrainingParams, parse_training_params

TASKS = {"alloy": {"kind": "classification", "num_outputs": 5}, "thickness": {"kind": "regression"}}


def _params(**options) -> TrainingParams:
    return parse_training_params({"tasks": TASKS, "epochs": 4}, {"arch": "resnet18", **options})


def test_the_architecture_overrides_the_shared_section_and_defaults_fill_the_rest():
    params = _params(lr=0.05, early_stopping={"patience": 2})
    assert (params.epochs, params.lr, params.early_stopping.patience) == (4, 0.05, 2)
    assert (
        params.early_stopping.min_epochs == TrainingParams.model_fields["early_stopping"].default.min_epochs
    )
    assert params.trainer_settings().lr == 0.05


def test_flatten_gives_dotted_keys_for_mlflow():
    flat = flatten(_params(gradient_method={"name": "gradnorm", "alpha": 0.5}))
    assert flat["lr"] == 1e-3 and flat["early_stopping.patience"] == 10
    assert flat["gradient_method.name"] == "gradnorm" and flat["gradient_method.alpha"] == 0.5
    assert flat["tasks.alloy.num_outputs"] == 5
    assert not any(isinstance(value, dict) and value for value in flat.values())


def test_resolved_parameters_round_trip_through_yaml():
    params = _params(gradient_method={"name": "pcgrad"}, model_options={"drop_rate": 0.1})
    again = TrainingParams.model_validate(yaml.safe_load(to_yaml(params)))
    assert again == params


def test_parameters_are_frozen():
    with pytest.raises(ValueError, match="frozen"):
        _params().lr = 1.0  # type: ignore[misc]


def test_method_parameters_are_checked_against_the_method():
    with pytest.raises(
        ParameterError, match=r"resnet18.train_options.gradient_method: unknown parameter\(s\) \['alpha'\]"
    ):
        _params(gradient_method={"name": "pcgrad", "alpha": 1.0})
    with pytest.raises(ParameterError, match="gradient method 'pcgard' unknown"):
        _params(gradient_method={"name": "pcgard"})


def test_disabled_tasks_leave_the_model_but_stay_in_the_record():
    params = parse_training_params(
        {"tasks": {**TASKS, "thickness": {**TASKS["thickness"], "enabled": False}}}, {"arch": "fnn"}
    )
    assert [t.name for t in params.task_specs] == ["alloy"]
    assert params.tasks["thickness"]["enabled"] is False
    with pytest.raises(ParameterError, match="every task is disabled"):
        parse_training_params({"tasks": {"alloy": {**TASKS["alloy"], "enabled": False}}}, {"arch": "fnn"})


def test_rebuild_optimizer_keeps_state_for_the_same_kind_and_restarts_for_another():
    weight = nn.Parameter(torch.ones(3))
    log_var = nn.Parameter(torch.zeros(2))
    adam = build_optimizer("adam", [weight], [log_var], lr=1e-3, weight_decay=1e-4)
    weight.grad, log_var.grad = torch.ones(3), torch.ones(2)
    adam.step()
    same = rebuild_optimizer(adam, "adam", lr=5e-4, weight_decay=1e-2)
    assert same is adam and same.state[weight]["step"] == 1
    assert [g["lr"] for g in same.param_groups] == [5e-4, 5e-4]
    assert [g["weight_decay"] for g in same.param_groups] == [1e-2, 0.0]
    sgd = rebuild_optimizer(adam, "sgd", lr=0.1, weight_decay=0.0, momentum=0.5)
    assert isinstance(sgd, torch.optim.SGD) and not sgd.state
    assert sgd.param_groups[0]["momentum"] == 0.5 and sgd.param_groups[1]["params"] == [log_var]


def test_monitor_must_name_a_metric_of_the_enabled_tasks():
    ap = {"metric": "val_alloy_ap", "mode": "max"}
    params = _params(monitor=ap)
    assert "val_alloy_ap" in params.epoch_metrics()
    assert "val_thickness_ap" not in params.epoch_metrics()  # AP is a classification metric
    no_alloy = {"alloy": {**TASKS["alloy"], "enabled": False}, "thickness": TASKS["thickness"]}
    with pytest.raises(
        ParameterError, match=r"monitor.metric: 'val_alloy_ap' is not a metric of the enabled"
    ):
        parse_training_params({"tasks": no_alloy}, {"arch": "fnn", "monitor": ap})
    with pytest.raises(ParameterError, match="val_thickness_mae"):  # the error lists what may be chosen
        _params(monitor={"metric": "val_thickness_ap", "mode": "max"})


def test_a_schedule_not_in_the_registry_is_refused_naming_the_registered_ones():
    from alloy_mtl.mtl.optim.schedules import SCHEDULES

    assert _params(lr_scheduler={"name": "one_cycle"}).lr_scheduler.name == "one_cycle"
    with pytest.raises(ParameterError) as err:
        _params(lr_scheduler={"name": "cosin"})
    (problem,) = err.value.problems
    assert problem.startswith("resnet18.train_options.lr_scheduler.name: lr schedule 'cosin' unknown")
    assert "did you mean cosine?" in problem
    assert f"expected one of {', '.join(SCHEDULES.names)}" in problem


def test_task_problems_are_named_by_their_yaml_place_not_nested_under_the_tasks_key():
    shared = {"arch": "fnn", "tasks": {"alloy": {"kind": "classification", "num_outputs": 5, "weight": -1}}}
    options = {"tasks": {"alloy": {"loss": "nope"}}}
    with pytest.raises(ParameterError) as caught:
        parse_training_params(shared, options, arch="fnn")
    problems = caught.value.problems
    assert any(p.startswith("training.tasks.alloy.weight: ") for p in problems), problems
    assert any(p.startswith("fnn.train_options.tasks.alloy.loss: ") for p in problems), problems
    assert not any("invalid parameters" in p for p in problems), problems


def test_image_gate_must_be_a_boolean_not_a_truthy_string():
    assert _params(model_options={"image_gate": True}).model_options == {"image_gate": True}
    with pytest.raises(
        ParameterError, match=r"model_options.*image_gate: expected true or false, got 'false'"
    ):
        _params(model_options={"image_gate": "false"})
