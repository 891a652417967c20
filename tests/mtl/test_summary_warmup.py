"""The summary warm-up: a gated model's fusion and heads fitted on the wedge summary and settings alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alloy_mtl.config import ParameterError
from alloy_mtl.constants import ALLOYS
from alloy_mtl.mtl.labelled_prediction import task_targets
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, fit_target_stats
from alloy_mtl.mtl.losses.task_losses import build_task_losses
from alloy_mtl.mtl.models.multitask import build_model
from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.mtl.recipe import prepare_experiment, train_from_params
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.summary_warmup import warm_up_summary_path

TASKS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "logit_adjusted"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
}


def _data(n_per_split: int = 40) -> tuple[np.ndarray, pd.DataFrame]:
    """Images whose mean level tells the alloy: the wedge summary alone can learn it."""
    rng = np.random.default_rng(0)
    rows, images = [], []
    for split in ("train", "val", "test"):
        for i in range(n_per_split):
            label = i % 5
            rows.append(
                {
                    "image_id": f"{split}-{i}",
                    "specimen_id": f"{split}-{i}",
                    "alloy": ALLOYS[label],
                    "thickness_mm": 1.0 + label,
                    "split": split,
                    "instrument_kv_scale": 1.0 + 0.01 * (i % 3),
                }
            )
            images.append(0.2 + 0.12 * label + 0.01 * rng.random((2, 8, 8)))
    return np.stack(images).astype(np.float32), pd.DataFrame(rows)


def _model(image_gate: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(
        "fnn",
        2,
        8,
        parse_tasks(TASKS),
        instrument_keys=["kv_scale"],
        wedge_summary=True,
        image_gate=image_gate,
        fnn_pool_size=4,
        fnn_hidden=[16],
    )
    return model


def _warmup_inputs(model: torch.nn.Module) -> tuple[ArrayTaskDataset, dict]:
    images, metadata = _data()
    tasks = parse_tasks(TASKS)
    rows = np.flatnonzero(metadata["split"] == "train")
    targets = task_targets(metadata, tasks)
    stats = fit_target_stats({"thickness": targets["thickness"]}, rows)
    settings = metadata[["instrument_kv_scale"]].to_numpy(np.float32)
    model.conditioning.fit(settings[rows])
    model.wedge_summary.fit(images, rows)
    dataset = ArrayTaskDataset(images, targets, rows, target_stats=stats, settings=settings)
    train_targets = {
        "alloy": targets["alloy"][rows],
        "thickness": (targets["thickness"][rows] - stats["thickness"][0]) / stats["thickness"][1],
    }
    return dataset, build_task_losses(tasks, train_targets)


def test_the_summary_fusion_is_what_encode_gives_while_the_gate_is_zero():
    model = _model().eval()
    x = torch.cat([torch.rand(6, 2, 8, 8), torch.full((6, 1, 8, 8), 1.01)], dim=1)
    closed = model.summary_fusion()(model.summary_inputs(x))
    assert torch.allclose(model.encode(x), closed, atol=1e-6)
    with torch.no_grad():
        model.image_gate.fill_(0.5)
    assert not torch.allclose(model.encode(x), closed, atol=1e-4)


def test_the_warmup_fits_the_heads_from_the_summary_and_leaves_the_image_path_alone():
    model = _model()
    dataset, losses = _warmup_inputs(model)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    heads = {k: v.clone() for k, v in model.heads.state_dict().items()}
    fusion = model.fusion[0].weight.detach().clone()
    width = model.num_features
    history = warm_up_summary_path(model, dataset, parse_tasks(TASKS), losses, epochs=100, seed=1)
    assert len(history) == 100
    assert history[-1] < 0.5 * history[0]  # the mean level tells the alloy and the thickness
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.items())
    assert float(model.image_gate.detach()) == 0.0
    assert any(not torch.equal(v, model.heads.state_dict()[k]) for k, v in heads.items())
    assert torch.equal(model.fusion[0].weight[:, :width], fusion[:, :width])  # the image's columns untouched
    assert not torch.equal(model.fusion[0].weight[:, width:], fusion[:, width:])  # written back
    model.eval()
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    predicted = model(images)["alloy"].argmax(dim=1)
    truth = torch.stack([dataset[i][1]["alloy"] for i in range(len(dataset))])
    assert float((predicted == truth).float().mean()) > 0.9


def test_the_warmup_repeats_itself_for_a_seed():
    first, second = _model(), _model()
    for model in (first, second):
        dataset, losses = _warmup_inputs(model)
        warm_up_summary_path(model, dataset, parse_tasks(TASKS), losses, epochs=3, seed=5)
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())


def test_the_warmup_refuses_a_model_without_a_closed_gate():
    ungated = _model(image_gate=False)
    dataset, losses = _warmup_inputs(ungated)
    with pytest.raises(ValueError, match="no image gate"):
        warm_up_summary_path(ungated, dataset, parse_tasks(TASKS), losses, epochs=1, seed=0)
    opened = _model()
    dataset, losses = _warmup_inputs(opened)
    with torch.no_grad():
        opened.image_gate.fill_(0.3)
    with pytest.raises(ValueError, match="the image gate is 0.3, not 0"):
        warm_up_summary_path(opened, dataset, parse_tasks(TASKS), losses, epochs=1, seed=0)


def _params(**overrides) -> dict:
    return {
        "arch": "fnn",
        "optimizer": "adam",
        "epochs": 1,
        "batch_size": 8,
        "seed": 3,
        "tasks": TASKS,
        "progress_bar": False,
        "wedge_summary": True,
        "max_train_images": 10,
        "model_options": {"fnn_pool_size": 4, "fnn_hidden": [16], "image_gate": True},
    } | overrides


def test_the_warmup_needs_the_gate_named_before_any_work():
    with pytest.raises(
        ParameterError,
        match="summary_warmup_epochs: 2 needs model_options.image_gate: true .*set summary_warmup_epochs: 0",
    ):
        parse_training_params(_params(summary_warmup_epochs=2, model_options={"fnn_pool_size": 4}))


def test_a_run_warms_up_on_every_training_image_not_only_its_subset():
    images, metadata = _data()
    warmed = prepare_experiment(images, metadata, _params(summary_warmup_epochs=150))
    cold = prepare_experiment(images, metadata, _params())
    assert len(warmed.train_rows) == 10  # the backbone's epochs keep their subset
    x = torch.stack([warmed.loaders["val"].dataset[i][0] for i in range(40)])
    truth = torch.tensor([i % 5 for i in range(40)])

    def accuracy(model: torch.nn.Module) -> float:
        return float((model.eval()(x)["alloy"].argmax(dim=1) == truth).float().mean())

    assert accuracy(warmed.model) > 0.8
    assert accuracy(cold.model) < 0.4
    result = train_from_params(images, metadata, _params(summary_warmup_epochs=2))
    assert result.summary["epochs_trained"] == 1
    assert result.summary["image_gate"] == pytest.approx(float(result.bundle["state_dict"]["image_gate"]))
