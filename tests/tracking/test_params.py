"""Parameters flattened to dotted keys; numeric leaves of metrics."""

from __future__ import annotations

from alloy_mtl.tracking.params import MAX_PARAM_VALUE_LENGTH, flatten_numbers, flatten_params


def test_nested_parameters_become_dotted_keys_with_json_values():
    flat = flatten_params(
        {
            "training": {
                "epochs": 10,
                "tasks": {"alloy": {"loss": "logit_adjusted"}},
                "kv": [40, 50],
                "x": None,
            }
        }
    )
    assert flat == {
        "training.epochs": "10",
        "training.tasks.alloy.loss": "logit_adjusted",
        "training.kv": "[40, 50]",
        "training.x": "null",
    }
    assert flatten_params({"options": {}}) == {"options": "{}"}
    assert len(flatten_params({"long": "x" * 7000})["long"]) == MAX_PARAM_VALUE_LENGTH


def test_only_numeric_leaves_become_metrics():
    metrics = {"classification": {"macro_ap": 0.5, "ap": {"1050": 1}, "name": "x", "ok": True, "l": [1]}}
    assert flatten_numbers(metrics, "test") == {
        "test.classification.macro_ap": 0.5,
        "test.classification.ap.1050": 1.0,
    }
