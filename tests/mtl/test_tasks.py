"""Task specification parsing."""

import pytest

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
        ({"kind": "segmentation"}, ["'alloy'", "'kind'", "segmentation"]),
        ({"kind": "classification", "num_outputs": 5, "loss": "hinge"}, ["'alloy'", "'loss'", "hinge"]),
        ({"kind": "regression", "loss": "cross_entropy"}, ["'alloy'", "'loss'", "cross_entropy"]),
        ({"kind": "classification", "loss": "cross_entropy"}, ["'alloy'", "'num_outputs'", "required"]),
        ({"kind": "classification", "num_outputs": 1}, ["'alloy'", "'num_outputs'"]),
        ({"kind": "regression", "weight": -0.5}, ["'alloy'", "'weight'", "non-negative"]),
        ({"kind": "regression", "weight": "heavy"}, ["'alloy'", "'weight'"]),
        ({"kind": "regression", "weigth": 1.0}, ["'alloy'", "'weigth'", "unknown key"]),
        ({"kind": "regression", "loss_params": {"tau": 1.0}}, ["'alloy'", "loss_params", "tau"]),
        (
            {"kind": "classification", "num_outputs": 5, "loss": "cb_focal", "loss_params": {"beta": 1.0}},
            ["beta"],
        ),
        ({"kind": "regression", "lds": {"bins": 10, "smoothing": 1}}, ["'alloy'", "'lds'", "smoothing"]),
        ({"kind": "regression", "lds": {"kernel_size": 4}}, ["'lds.kernel_size'", "odd"]),
        ({"kind": "regression", "lds": {"reweight": "log"}}, ["'lds.reweight'", "log"]),
        ({"kind": "regression", "fds": {"momentum": 1.5}}, ["'fds.momentum'"]),
        (
            {"kind": "classification", "num_outputs": 5, "lds": {"enabled": True}},
            ["'alloy'", "'lds'", "regression"],
        ),
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
    with pytest.raises(ValueError, match="'alloy'"):
        parse_tasks({"alloy": "classification"})
