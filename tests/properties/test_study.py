"""Masked multi-task training on disjoint label sets with the mtl core; the structured model; the report."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from alloy_mtl.properties.elements import ELEMENTS
from alloy_mtl.properties.features import composition_features
from alloy_mtl.properties.generator import TARGETS, generate_alloys
from alloy_mtl.properties.models import RelationMultiTaskModel, build_tabular_model
from alloy_mtl.properties.params import Configuration, parse_study_params
from alloy_mtl.properties.report import verdict_markdown
from alloy_mtl.properties.split import split_alloys
from alloy_mtl.properties.study import prepare_data, run_study, train_and_test

TINY = {"study": {"seeds": 2, "batch_size": 32, "model": {"hidden": [16]}, "training": {"epochs": 2}}}


@pytest.fixture(scope="module")
def model_input() -> pd.DataFrame:
    frame = generate_alloys(240, 40, 40, seed=1)  # disjoint label sets
    table = pd.concat([frame[["alloy_id", *TARGETS]], composition_features(frame[list(ELEMENTS)])], axis=1)
    return split_alloys(table, {"train": 0.7, "val": 0.15, "test": 0.15})


def test_masked_training_on_disjoint_label_sets(model_input: pd.DataFrame) -> None:
    study = parse_study_params(TINY).study
    tasks = study.task_specs()
    data = prepare_data(model_input, tasks)
    assert data.features.shape[1:] == (18, 1, 1)
    metrics, history, relation = train_and_test(Configuration(), tasks, data, study, seed=0)
    assert set(metrics) == {"resistivity", "hardness", "amorphous"}
    assert set(metrics["amorphous"]) == {"f1", "recall", "ap"}
    assert history.loc[history["epoch"] > 0, ["train_loss", "val_loss"]].notna().all().all()
    assert history["epoch"].tolist() == [0, 1, 2]  # probe before training, then each epoch
    assert history["angle_resistivity__hardness"].between(0, 180).all()
    assert relation is None
    again, _, _ = train_and_test(Configuration(), tasks, data, study, seed=0)
    assert again == metrics  # deterministic on the CPU


def test_a_head_without_labels_in_a_batch_gets_no_gradient() -> None:
    study = parse_study_params(TINY).study
    tasks = study.task_specs()
    model = build_tabular_model("hard_sharing", tasks, 4, (8,))
    from alloy_mtl.mtl.losses.task_losses import build_task_losses

    losses = build_task_losses(tasks)
    x = torch.randn(3, 4, 1, 1)
    out = model(x)
    targets = {"resistivity": torch.tensor([0.1, float("nan"), float("nan")]),
               "hardness": torch.full((3,), float("nan")), "amorphous": torch.tensor([-1, 1, -1])}  # fmt: skip
    total = sum(losses[t.name](out[t.name], targets[t.name], None) for t in tasks)
    total.backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in model.task_parameters("hardness"))
    assert any(p.grad is not None and torch.any(p.grad != 0) for p in model.task_parameters("amorphous"))


def test_structured_model_learns_a_relation_matrix(model_input: pd.DataFrame) -> None:
    study = parse_study_params(TINY).study
    tasks = study.task_specs()
    model = build_tabular_model("structured", tasks, 18, (8,), relation_init=0.1)
    assert isinstance(model, RelationMultiTaskModel)
    assert model.relation_matrix().diagonal().tolist() == [1.0, 1.0, 1.0]
    assert any(p is model.relation["hardness"] for p in model.task_parameters("hardness"))
    data = prepare_data(model_input, tasks)
    _, _, relation = train_and_test(Configuration(kind="structured"), tasks, data, study, seed=0)
    assert relation.shape == (3, 3)
    assert not (relation == model.relation_matrix().numpy()).all()  # trained


def test_study_and_verdict_on_a_tiny_configuration(model_input: pd.DataFrame) -> None:
    params = parse_study_params(
        {
            "study": {
                **TINY["study"],
                "configurations": {
                    "single_task": {"kind": "single_task"},
                    "mtl_equal": {},
                    "mtl_upgrad": {"gradient_method": {"name": "upgrad"}},  # any method by name
                },
            }
        }  # fmt: skip
    )
    result = run_study(model_input, params.study)
    assert set(result.runs["configuration"]) == {"single_task", "mtl_equal", "mtl_upgrad"}
    assert len(result.runs) == 2 * 3 * 5  # seeds x configurations x (r2, r2, f1, recall, ap)
    assert result.relations.empty
    from alloy_mtl.properties.report import transfer_findings
    from alloy_mtl.properties.stats import summarise

    primary = {"resistivity": "r2", "hardness": "r2", "amorphous": "f1"}
    summary = summarise(result.runs, "single_task", primary)
    findings = transfer_findings(summary, primary, "single_task", "mtl_equal", ["mtl_upgrad"], 0.05, 0.5)
    text = verdict_markdown(
        summary, result.histories, result.relations, findings,
        {"order": ["single_task", "mtl_equal", "mtl_upgrad"], "baseline": "single_task", "reference": "mtl_equal",
         "primary": primary, "alpha": 0.05, "recovery_share": 0.5, "n_seeds": 2, "data_description": "tiny"},
    )  # fmt: skip
    assert "| mtl_upgrad |" in text and "paired t-test" in text
    assert "MTL hurts the low-data regression task" in text
