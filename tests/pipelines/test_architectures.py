"""The backbone registry is the one home of the architectures: pipelines, start priorities and every YAML
namespace (train_options, catalog, kubeflow.yml resources) name exactly the registered ones."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog

from alloy_mtl.mtl.models import backbones
from alloy_mtl.mtl.models.backbones import ARCHITECTURES, BACKBONES, DEFAULT_ACTIVATIONS
from alloy_mtl.pipeline_registry import register_pipelines
from alloy_mtl.pipelines.training import pipeline as training_pipeline
from alloy_mtl.runner import MAX_DEFAULT_WORKERS
from tests.conftest import REPO_ROOT

ENVS = ("local", "paper")


def _config(env: str, key: str) -> dict[str, Any]:
    loader = OmegaConfigLoader(
        str(REPO_ROOT / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft", "catalog": "soft"},
    )
    return loader[key]


def test_the_pipelines_and_the_runner_derive_the_architectures_from_the_registry():
    assert ARCHITECTURES == BACKBONES.names
    assert training_pipeline.ARCHITECTURES == ARCHITECTURES
    assert MAX_DEFAULT_WORKERS == len(ARCHITECTURES)
    pipelines = register_pipelines()
    assert {name.removeprefix("train_") for name in pipelines if name.startswith("train_")} == {
        *ARCHITECTURES,
        "all",
    }
    assert {name.removeprefix("tune_") for name in pipelines if name.startswith("tune_")} == {
        *ARCHITECTURES,
        "all",
    }


def test_every_architecture_registers_its_activation_and_a_distinct_start_priority():
    priorities = training_pipeline.START_PRIORITY
    assert set(priorities) == set(ARCHITECTURES) == set(DEFAULT_ACTIVATIONS)
    assert len(set(priorities.values())) == len(ARCHITECTURES)
    assert priorities["vgg16"] == max(priorities.values())  # the costliest CPU training starts first
    pipelines = register_pipelines()
    for arch in ARCHITECTURES:
        (train,) = [node for node in pipelines[f"train_{arch}"].nodes if node.name == f"{arch}.train"]
        assert f"priority_{priorities[arch]}" in train.tags, arch


@pytest.mark.parametrize("priority", [0, -1, True, "2"])
def test_an_architecture_without_a_valid_start_priority_is_refused_naming_it(priority):
    with pytest.raises(ValueError, match=r"start_priority of 'resnet101': expected an integer >= 1"):
        backbones._architecture("resnet101", activation="relu", start_priority=priority)
    assert "resnet101" not in BACKBONES


@pytest.mark.parametrize("env", ENVS)
def test_train_options_namespaces_are_exactly_the_registered_architectures(env):
    params = _config(env, "parameters")
    namespaces = {
        name for name, section in params.items() if isinstance(section, dict) and "train_options" in section
    }
    assert namespaces == set(ARCHITECTURES), (
        f"conf/{env}: architectures without train_options: {sorted(set(ARCHITECTURES) - namespaces)}; "
        f"train_options of unregistered architectures: {sorted(namespaces - set(ARCHITECTURES))}"
    )
    for arch in ARCHITECTURES:
        assert params[arch]["train_options"].get("arch", arch) == arch, f"{arch}.train_options.arch"


@pytest.mark.parametrize("env", ("base", "paper"))
def test_no_parameters_file_names_an_unregistered_architecture(env):
    for path in sorted((REPO_ROOT / "conf" / env).glob("parameters*.yml")):
        for name, section in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(section, dict) and "train_options" in section:
                assert name in ARCHITECTURES, f"{path.relative_to(REPO_ROOT)}: {name} is not registered"


SHARED_DATASETS = {"evaluation_set_instrument"}
"""Datasets every architecture's pipeline shares (fitted once, read by each)."""


@pytest.mark.parametrize("env", ENVS)
def test_every_dataset_of_an_architecture_has_a_catalog_entry(env):
    catalog_config = _config(env, "catalog")
    resolver = DataCatalog.from_config(catalog_config).config_resolver
    pipelines = register_pipelines()
    for arch in ARCHITECTURES:
        for pipeline in (pipelines[f"train_{arch}"], pipelines[f"tune_{arch}"]):
            for dataset in pipeline.datasets() - {"model_input"}:
                if dataset.startswith("params:"):
                    continue
                assert dataset.startswith(f"{arch}.") or dataset in SHARED_DATASETS, dataset
                assert dataset in catalog_config or resolver.match_dataset_pattern(dataset), (
                    f"{dataset} has no catalog entry in conf/{env} (it would be a memory dataset)"
                )
    namespaces = {
        dataset.split(".")[0]
        for pipeline in pipelines.values()
        for dataset in pipeline.datasets()
        if "." in dataset and not dataset.startswith("params:")
    }
    explicit = {name.split(".")[0] for name in catalog_config if "." in name and "{" not in name}
    assert explicit <= namespaces, f"catalog entries of unknown namespaces: {sorted(explicit - namespaces)}"


def test_kubeflow_resources_name_each_architecture_and_no_other_training_step():
    config = yaml.safe_load((REPO_ROOT / "conf" / "base" / "kubeflow.yml").read_text())
    other_groups = {
        "__default__",
        config["final_step"]["pipeline"],
        *config["grouping"]["pipelines"].values(),
    }
    steps = set(config["resources"]) - other_groups
    assert steps == set(ARCHITECTURES), (
        f"kubeflow.yml resources: architectures without an entry: {sorted(set(ARCHITECTURES) - steps)}; "
        f"entries of unregistered architectures: {sorted(steps - set(ARCHITECTURES))}"
    )
