"""Wrong parameters stop a run before its first node, each named by its YAML path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from alloy_mtl.config import ParameterError
from alloy_mtl.mtl.models.backbones import ARCHITECTURES
from alloy_mtl.parameters import check_parameters


def test_a_typo_in_training_stops_the_run_before_any_node(kedro_project, run_pipeline):
    with pytest.raises(ParameterError, match=r"training.epochz: unknown key; did you mean epochs\?"):
        run_pipeline(kedro_project, "train_fnn", {"training": {"epochz": 3}})
    assert not (kedro_project / "data" / "06_models").exists()


def test_a_bad_gate_setting_stops_train_all_before_any_node(kedro_project, run_pipeline):
    with pytest.raises(ParameterError, match=r"registry.level: got 2, expected a number in \[0.5, 1\)"):
        run_pipeline(kedro_project, "train_all", {"registry": {"level": 2}})
    assert not (kedro_project / "data" / "01_raw").exists()


def test_every_problem_of_every_section_is_listed_once():
    params = {
        "training": {"epochz": 3, "tasks": {"alloy": {"kind": "classification", "num_outputs": 5}}},
        "resnet18.train_options": {"arch": "resnet18", "lr": -1.0, "model_options": {"fnn_hidden": [8]}},
        "fnn.train_options": {"arch": "fnn", "optimizer": "lbgfs"},
        "split": {"fractions": {"train": 0.8, "val": 0.2}},
        "data_source": {"kind": "csv_folder"},
        "evaluation": {"ece_bin": 10},
        "generation": {"n_imgs": 3},
        "registry": {"alloy_tolerance": -1, "n_resamples": 10},
    }
    with pytest.raises(ParameterError) as err:
        check_parameters(params)
    problems = err.value.problems
    expected = [
        "training.epochz: unknown key; did you mean epochs?",
        "resnet18.train_options.lr: got -1.0, expected greater than 0",
        "resnet18.train_options.model_options: unknown option(s) ['fnn_hidden'] for resnet18",
        "fnn.train_options.optimizer: optimizer 'lbgfs' unknown (expected one of adam, adamw, sgd, rmsprop)",
        "split: fractions: missing split(s) ['test']",
        "data_source: path: required when kind is 'csv_folder'",
        "evaluation.ece_bin: unknown key; did you mean ece_bins?",
        "generation: unknown SimulationConfig key(s) 'n_imgs'",
        "registry.alloy_tolerance: got -1, expected a number >= 0",
        "registry.n_resamples: got 10, expected an integer >= 100",
    ]
    for fragment in expected:
        assert any(fragment in problem for problem in problems), (fragment, problems)
    assert sum("training.epochz" in p for p in problems) == 1  # reported once, not once per architecture


def test_the_shipped_configurations_parse(kedro_project):
    from kedro.config import OmegaConfigLoader

    for env in ("local", "paper"):
        loader = OmegaConfigLoader(
            str(kedro_project / "conf"),
            base_env="base",
            default_run_env=env,
            merge_strategy={"parameters": "soft"},
        )
        check_parameters(
            loader["parameters"]
            | {
                f"{arch}.train_options": section["train_options"]
                for arch, section in loader["parameters"].items()
                if isinstance(section, dict) and "train_options" in section
            }
        )


@pytest.mark.slow
def test_kedro_run_exits_non_zero_naming_the_key(kedro_project):
    # the installed package, not this process's sys.path: a test that loaded a logged MLflow model put its
    # partial copy of alloy_mtl (only the modules the pyfunc needs) on sys.path
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipeline", "train_fnn", "--params", "training.epochz=3"],
        cwd=kedro_project,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "training.epochz: unknown key" in result.stdout + result.stderr
    assert not (kedro_project / "data" / "06_models").exists()


REFERENCE_LR = {
    "resnet18": 1.0e-3,
    "resnet34": 1.0e-2,
    "resnet50": 5.0e-4,
    "vgg16": 2.0e-4,
    "efficientnet_b0": 2.0e-3,
    "fnn": 1.0e-2,
}
"""The reference study's model table (docs/guide/training.md, "What the CPU default trades away")."""
REFERENCE_OPTIMIZER = {
    "resnet18": "adam",
    "resnet34": "sgd",
    "resnet50": "rmsprop",
    "vgg16": "adam",
    "efficientnet_b0": "rmsprop",
    "fnn": "sgd",
}


def test_the_paper_environment_keeps_none_of_the_cpu_budget_choices(kedro_project):
    from kedro.config import OmegaConfigLoader

    from alloy_mtl.mtl.params import deep_merge, parse_training_params

    loader = OmegaConfigLoader(
        str(kedro_project / "conf"),
        base_env="base",
        default_run_env="paper",
        merge_strategy={"parameters": "soft"},
    )
    params = loader["parameters"]
    assert set(REFERENCE_LR) == set(ARCHITECTURES)
    for arch in ARCHITECTURES:
        resolved = parse_training_params(deep_merge(params["training"], params[arch]["train_options"]))
        assert resolved.epochs == 100, arch
        assert (resolved.amp, resolved.channels_last) == ("auto", "auto"), arch
        assert (resolved.image_size, resolved.max_train_images) == (None, None), arch
        assert resolved.monitor.metric == "val_loss" and resolved.input_transform == "neg_log", arch
        assert resolved.lr_scheduler.name == "reduce_on_plateau" and not resolved.ema.enabled, arch
        assert resolved.lr == REFERENCE_LR[arch], arch
        assert resolved.optimizer == REFERENCE_OPTIMIZER[arch], arch


def test_a_bad_robustness_condition_stops_the_suite_before_any_node(kedro_project, run_pipeline):
    conditions = {"hot_tube": {"kv_scal": 1.02}, "thin": {"wedge_length_mm": 30.0}}
    with pytest.raises(ParameterError) as err:
        run_pipeline(kedro_project, "robustness", {"evaluation": {"robustness": {"conditions": conditions}}})
    message = str(err.value)
    assert "evaluation.robustness.conditions.hot_tube" in message and "did you mean kv_scale" in message
    assert "evaluation.robustness.conditions.thin" in message and "'wedge_length_mm'" in message
    assert not (kedro_project / "data" / "08_reporting" / "robustness").exists()
