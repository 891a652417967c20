"""The tuning parameters: defaults, the search space, every problem named by its YAML path."""

from __future__ import annotations

import sys

import pytest

from alloy_mtl.config import ParameterError, parse_params
from alloy_mtl.parameters import check_parameters
from alloy_mtl.tuning.params import TuningParams


def test_defaults_are_the_reference_search_space():
    params = parse_params(TuningParams, {}, "tuning")
    assert params.optimizers == ["adam", "sgd", "rmsprop"]
    assert params.lr.low < params.lr.high
    assert params.ray_address is None


def test_every_problem_is_listed_with_its_yaml_path():
    with pytest.raises(ParameterError) as err:
        parse_params(
            TuningParams,
            {
                "optimizers": ["adam", "lbfgs"],
                "lr": {"low": 1e-2, "high": 1e-3},
                "weight_decay": {"low": -1, "high": 1},
                "quantile_fraction": 0.7,
                "populaton_size": 4,
            },
            "tuning",
        )
    text = str(err.value)
    assert len(err.value.problems) == 5, text
    assert "tuning.optimizers" in text and "lbfgs" in text
    assert "tuning.lr" in text and "must be below high" in text
    assert "tuning.weight_decay.low" in text
    assert "tuning.quantile_fraction" in text
    assert "tuning.populaton_size: unknown key; did you mean population_size?" in text


def test_an_interval_longer_than_training_is_refused():
    with pytest.raises(ParameterError, match="perturbation_interval"):
        parse_params(TuningParams, {"perturbation_interval": 5, "max_epochs": 3}, "tuning")


def test_the_parameter_check_covers_the_tuning_section():
    with pytest.raises(ParameterError, match=r"tuning\.max_epoch"):
        check_parameters({"tuning": {"max_epoch": 3}})


def test_without_ray_a_tune_pipeline_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    from alloy_mtl.tuning.population import TuningUnavailableError, require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(TuningUnavailableError, match=r'pip install -e "\.\[tune\]"'):
        require_ray()


def test_checkpoint_retention_keeps_enough_for_pbt_to_restore():
    assert parse_params(TuningParams, {}, "tuning").checkpoints_to_keep == 4
    assert parse_params(TuningParams, {"checkpoints_to_keep": None}, "tuning").checkpoints_to_keep is None
    with pytest.raises(ParameterError, match="tuning.checkpoints_to_keep"):
        parse_params(TuningParams, {"checkpoints_to_keep": 2}, "tuning")
