"""Task specification parsing."""

import pytest
import yaml

from alloy_mtl.config import ParameterError
from alloy_mtl.constants import ALLOYS
from alloy_mtl.mtl.tasks import FDSConfig, LDSConfig, TaskSpec, parse_tasks

REFERENCE = {
    "tasks": {
        "alloy": {
            "kind": "classification",
            "target": "alloy",
            "num_outputs": 5,
            "loss": "logit_adjusted",
            "weight": 1.0,
            "loss_params": {"tau": 1.5},
        },
        "thickness": {
            "kind": "regression",
            "target": "thickness_mm",
            "loss": "mse",
            "weight": 0.5,
            "lds": {
                "enabled": True,
                "bins": 50,
                "kernel": "gaussian",
                "kernel_size": 5,
                "sigma": 2.0,
                "reweight": "sqrt_inv",
            },
            "fds": {"enabled": False},
        },
        "absorption": {
            "kind": "regression",
            "target": "absorption",
            "loss": "huber",
            "lds": {"enabled": False},
        },
    }
}


def test_reference_config_parses_with_defaults() -> None:
    alloy, thickness, absorption = parse_tasks(REFERENCE)
    assert alloy == TaskSpec(
        name="alloy",
        kind="classification",
        target="alloy",
        num_outputs=5,
        loss="logit_adjusted",
        weight=1.0,
        loss_params={"tau": 1.5},
    )
    assert alloy.is_classification and not thickness.is_classification
    assert thickness.num_outputs == 1 and thickness.weight == 0.5
    assert thickness.lds == LDSConfig(
        bins=50, kernel="gaussian", kernel_size=5, sigma=2.0, reweight="sqrt_inv"
    )
    assert thickness.fds is None and absorption.lds is None
    assert absorption.loss_params == {"delta": 1.0}


def test_inner_mapping_and_defaults() -> None:
    (task,) = parse_tasks({"thickness": {"kind": "regression", "fds": {"start_epoch": 3}}})
    assert (task.target, task.loss, task.weight) == ("thickness", "mse", 1.0)
    assert task.fds == FDSConfig(start_epoch=3)
    (cb,) = parse_tasks({"alloy": {"kind": "classification", "num_outputs": 3, "loss": "cb_focal"}})
    assert cb.loss_params == {"beta": 0.999, "gamma": 1.0}


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ({"kind": "segmentation"}, ["tasks.alloy.kind:", "segmentation"]),
        ({}, ["tasks.alloy.kind:", "required"]),
        ({"kind": "classification", "num_outputs": 5, "loss": "hinge"}, ["tasks.alloy.loss:", "hinge"]),
        ({"kind": "regression", "loss": "cross_entropy"}, ["tasks.alloy.loss:", "cross_entropy"]),
        ({"kind": "classification", "loss": "cross_entropy"}, ["tasks.alloy.num_outputs:", "required"]),
        ({"kind": "classification", "num_outputs": 1}, ["tasks.alloy.num_outputs:"]),
        ({"kind": "regression", "weight": -0.5}, ["tasks.alloy.weight:", "greater than or equal to 0"]),
        ({"kind": "regression", "weight": "heavy"}, ["tasks.alloy.weight:"]),
        ({"kind": "regression", "weight": True}, ["tasks.alloy.weight:"]),
        ({"kind": "regression", "weigth": 1.0}, ["tasks.alloy.weigth:", "unknown key"]),
        ({"kind": "regression", "loss_params": {"tau": 1.0}}, ["tasks.alloy.loss_params:", "tau"]),
        (
            {"kind": "classification", "num_outputs": 5, "loss": "cb_focal", "loss_params": {"beta": 1.0}},
            ["tasks.alloy.loss_params:", "beta"],
        ),
        (
            {"kind": "regression", "lds": {"bins": 10, "smoothing": 1}},
            ["tasks.alloy.lds.smoothing:", "unknown"],
        ),
        ({"kind": "regression", "lds": {"kernel_size": 4}}, ["tasks.alloy.lds.kernel_size:", "odd"]),
        ({"kind": "regression", "lds": {"bins": 5.0}}, ["tasks.alloy.lds.bins:"]),
        ({"kind": "regression", "lds": {"reweight": "log"}}, ["tasks.alloy.lds.reweight:", "log"]),
        ({"kind": "regression", "fds": {"momentum": 1.5}}, ["tasks.alloy.fds.momentum:"]),
        ({"kind": "regression", "fds": {"clip_min": 5, "clip_max": 1}}, ["tasks.alloy.fds:", "clip_min"]),
        ({"kind": "regression", "fds": {"enabled": False, "moment": 1}}, ["tasks.alloy.fds:", "moment"]),
        (
            {"kind": "classification", "num_outputs": 5, "lds": {"enabled": True}},
            ["tasks.alloy.lds:", "regression"],
        ),
        ({"kind": "regression", "classes": ["a", "b"]}, ["tasks.alloy.classes:", "classification"]),
        ({"kind": "classification", "classes": ["a", "b"], "num_outputs": 3}, ["tasks.alloy.classes:"]),
        ({"kind": "regression", "name": "other"}, ["tasks.alloy.name:", "other"]),
    ],
)
def test_errors_name_task_and_field(spec: dict, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        parse_tasks({"alloy": spec})
    for fragment in fragments:
        assert fragment in str(err.value)


def test_bad_top_level() -> None:
    with pytest.raises(ValueError, match="at least one task"):
        parse_tasks({})
    with pytest.raises(ValueError, match="task name"):
        parse_tasks({"a__b": {"kind": "regression"}})
    with pytest.raises(ValueError, match="tasks.alloy: expected a mapping"):
        parse_tasks({"alloy": "classification"})


def _as_recorded(spec: TaskSpec) -> dict:
    """A spec in the form the dataclass parser before issue 26 gave (``dataclasses.asdict``)."""
    fields = "name kind target num_outputs loss weight loss_params lds fds classes".split()
    record = {f: getattr(spec, f) for f in fields}
    for section in ("lds", "fds"):
        if record[section] is not None:
            record[section] = record[section].model_dump(exclude={"enabled"})
    return record


#: Recorded from the parser before the task specs became parameter models.
_LDS_50 = {"bins": 50, "kernel": "gaussian", "kernel_size": 5, "sigma": 2.0, "reweight": "sqrt_inv"}
_LDS_30 = {**_LDS_50, "bins": 30}
SHIPPED_TRAINING_TASKS = [
    {"name": "alloy", "kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "logit_adjusted",
     "weight": 1.0, "loss_params": {"tau": 1.0}, "lds": None, "fds": None, "classes": ALLOYS},
    {"name": "thickness", "kind": "regression", "target": "thickness_mm", "num_outputs": 1, "loss": "mse",
     "weight": 1.0, "loss_params": {}, "lds": _LDS_50, "fds": None, "classes": ()},
    {"name": "absorption", "kind": "regression", "target": "absorption", "num_outputs": 1, "loss": "mse",
     "weight": 1.0, "loss_params": {}, "lds": _LDS_50, "fds": None, "classes": ()},
]  # fmt: skip
SHIPPED_STUDY_TASKS = [
    {"name": "resistivity", "kind": "regression", "target": "resistivity", "num_outputs": 1, "loss": "mse",
     "weight": 1.0, "loss_params": {}, "lds": _LDS_30, "fds": None, "classes": ()},
    {"name": "hardness", "kind": "regression", "target": "hardness", "num_outputs": 1, "loss": "mse",
     "weight": 1.0, "loss_params": {}, "lds": _LDS_30, "fds": None, "classes": ()},
    {"name": "amorphous", "kind": "classification", "target": "amorphous", "num_outputs": 2,
     "loss": "cross_entropy", "weight": 1.0, "loss_params": {}, "lds": None, "fds": None, "classes": ("0", "1")},
]  # fmt: skip


@pytest.mark.parametrize("env", ["local", "paper"])
def test_the_shipped_tasks_parse_as_they_did_before(kedro_project, env: str) -> None:
    from kedro.config import OmegaConfigLoader

    from alloy_mtl.mtl.params import parse_training_params
    from alloy_mtl.properties.params import parse_study_params

    loader = OmegaConfigLoader(
        str(kedro_project / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
    )
    params = loader["parameters"]
    training = parse_training_params(params["training"], params["fnn"]["train_options"], "fnn")
    assert [_as_recorded(t) for t in training.task_specs] == SHIPPED_TRAINING_TASKS
    study = parse_study_params(params["alloy_properties"]).study
    assert [_as_recorded(t) for t in study.task_specs(lds=True)] == SHIPPED_STUDY_TASKS
    without_lds = [{**t, "lds": None} for t in SHIPPED_STUDY_TASKS]
    assert [_as_recorded(t) for t in study.task_specs(lds=False)] == without_lds


#: Task dicts as model bundles and checkpoints written before issue 26 hold them (the YAML form), with the
#: liberties the old parser took: ints for floats, integer class labels, an ``inverse`` alias, ``loss_params:
#: null``, and a disabled section that still carries a value it would refuse when enabled.
OLD_BUNDLE_TASKS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "cb_focal",
              "loss_params": {"gamma": 2}, "weight": 2},
    "grade": {"kind": "classification", "classes": [1, 2, 3], "loss_params": None},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "huber", "weight": 0.5,
                  "lds": {"enabled": True, "bins": 20, "kernel": "laplace", "kernel_size": 3, "sigma": 1,
                          "reweight": "inverse"},
                  "fds": {"enabled": False, "momentum": 2.0}},
    "absorption": {"kind": "regression", "lds": {"enabled": False, "bins": 1},
                   "fds": {"start_epoch": 0, "clip_max": 5}},
}  # fmt: skip
OLD_BUNDLE_RECORDED = [
    {"name": "alloy", "kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "cb_focal",
     "weight": 2.0, "loss_params": {"beta": 0.999, "gamma": 2.0}, "lds": None, "fds": None, "classes": ALLOYS},
    {"name": "grade", "kind": "classification", "target": "grade", "num_outputs": 3, "loss": "cross_entropy",
     "weight": 1.0, "loss_params": {}, "lds": None, "fds": None, "classes": ("1", "2", "3")},
    {"name": "thickness", "kind": "regression", "target": "thickness_mm", "num_outputs": 1, "loss": "huber",
     "weight": 0.5, "loss_params": {"delta": 1.0},
     "lds": {"bins": 20, "kernel": "laplace", "kernel_size": 3, "sigma": 1.0, "reweight": "inv"},
     "fds": None, "classes": ()},
    {"name": "absorption", "kind": "regression", "target": "absorption", "num_outputs": 1, "loss": "mse",
     "weight": 1.0, "loss_params": {}, "lds": None,
     "fds": {"bins": 50, "kernel": "gaussian", "kernel_size": 5, "sigma": 2.0, "start_epoch": 0,
             "momentum": 0.9, "clip_min": 0.1, "clip_max": 5.0},
     "classes": ()},
]  # fmt: skip


def test_an_old_bundles_task_dicts_parse_as_they_did() -> None:
    specs = parse_tasks({"tasks": OLD_BUNDLE_TASKS})
    assert [_as_recorded(t) for t in specs] == OLD_BUNDLE_RECORDED
    assert all(isinstance(t.weight, float) for t in specs)
    # A parsed spec dumps back to an entry that parses to the same spec.
    assert parse_tasks({t.name: t.model_dump() for t in specs}) == specs


def test_every_bad_field_of_every_task_is_listed_in_one_error() -> None:
    tasks = yaml.safe_load(
        """
        alloy: {kind: classification, num_outputs: 5, loss: hinge, weight: -1}
        thickness:
          kind: regression
          lds: {enabled: true, kernel_size: 4, reweight: log}
          fds: {momentum: 1.5}
        absorption: {kind: regression, taget: absorption}
        """
    )
    with pytest.raises(ParameterError) as err:
        parse_tasks(tasks)
    places = [problem.split(": ", 1)[0] for problem in err.value.problems]
    assert places == [
        "tasks.alloy.loss",
        "tasks.alloy.weight",
        "tasks.thickness.lds.kernel_size",
        "tasks.thickness.lds.reweight",
        "tasks.thickness.fds.momentum",
        "tasks.absorption.taget",
    ]
    assert str(err.value).startswith("6 invalid parameters:")
    assert "did you mean target?" in err.value.problems[-1]
