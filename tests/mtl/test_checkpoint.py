"""Checkpoints: atomic writes, RNG capture, config guard, and resume == uninterrupted training on CPU."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from alloy_mtl.mtl.device import seed_everything
from alloy_mtl.mtl.training.checkpoint_callback import CheckpointCallback
from alloy_mtl.mtl.training.checkpoint_io import (
    CheckpointMismatchError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from alloy_mtl.mtl.training.trainer import Trainer

from .test_trainer import LOSSES, TASKS, StandInModel, Task, make_loaders


def _trainer(checkpoint_dir: Path, epochs: int, resume: bool, method: str, **overrides: object) -> Trainer:
    seed_everything(123)  # a resumed run starts from other weights: the checkpoint must override them
    model = StandInModel()
    if not resume:
        seed_everything(0)
        model = StandInModel()
    settings = {
        "epochs": epochs, "lr": 1e-2, "progress_bar": False, "device": "cpu", "early_stopping": {"min_epochs": 0},
        "gradient_method": {"name": method, "diagnostics_every": 3}, "restore_best": False, **overrides,
    }  # fmt: skip
    _, _, stats = make_loaders()
    model.target_scaler.set_stats(stats)
    return Trainer(model, TASKS, LOSSES, settings, callbacks=[CheckpointCallback(checkpoint_dir, resume)])


def _fit(trainer: Trainer) -> pd.DataFrame:
    train_loader, val_loader, _ = make_loaders()
    return trainer.fit(train_loader, val_loader)


@pytest.mark.parametrize("method", ["equal", "pcgrad", "gradnorm", "uncertainty"])
def test_resume_matches_uninterrupted_run(tmp_path: Path, method: str) -> None:
    straight = _trainer(tmp_path / "straight", epochs=4, resume=False, method=method)
    history_straight = _fit(straight)

    first = _trainer(tmp_path / "split", epochs=2, resume=False, method=method)
    _fit(first)
    # unrelated RNG use between the runs must not matter
    torch.rand(5)
    np.random.rand(3)
    random.random()
    resumed = _trainer(tmp_path / "split", epochs=4, resume=True, method=method)
    history_resumed = _fit(resumed)

    assert len(history_resumed) == 4
    pd.testing.assert_frame_equal(
        history_straight.drop(columns="epoch_time_s"), history_resumed.drop(columns="epoch_time_s")
    )
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for key, value in straight.method.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.method.state_dict()[key]), key


def test_resume_of_finished_run_trains_nothing_more(tmp_path: Path) -> None:
    _fit(_trainer(tmp_path, epochs=2, resume=False, method="equal"))
    again = _trainer(tmp_path, epochs=2, resume=True, method="equal")
    history = _fit(again)
    assert history["epoch"].tolist() == [1, 2]
    assert again.epoch == 2


def test_resume_refuses_checkpoint_of_other_tasks(tmp_path: Path) -> None:
    _fit(_trainer(tmp_path, epochs=1, resume=False, method="equal"))
    tasks = [Task("alloy", "classification", 1.0, 4), TASKS[1]]  # 4 classes instead of 3
    other = Trainer(
        StandInModel(tasks),
        tasks,
        LOSSES,
        {"epochs": 2, "progress_bar": False, "device": "cpu"},
        callbacks=[CheckpointCallback(tmp_path, resume=True)],
    )
    with pytest.raises(CheckpointMismatchError, match=r"different configuration.*(model|tasks)"):
        _fit(other)


def test_resume_refuses_checkpoint_of_other_gradient_method(tmp_path: Path) -> None:
    _fit(_trainer(tmp_path, epochs=1, resume=False, method="equal"))
    with pytest.raises(CheckpointMismatchError, match="gradient_method: checkpoint='equal' current='pcgrad'"):
        _fit(_trainer(tmp_path, epochs=2, resume=True, method="pcgrad"))


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    history = _fit(_trainer(tmp_path / "empty", epochs=1, resume=True, method="equal"))
    assert history["epoch"].tolist() == [1]
    assert (tmp_path / "empty" / "last.pt").is_file()


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = save_checkpoint({"fingerprint": {}, "x": torch.arange(3)}, tmp_path / "sub" / "last.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))


def test_load_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt could not be read"):
        load_checkpoint(bad)
    torch.save({"model": {}}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


def test_rng_state_round_trip(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(5)
    seed_everything(9)
    state = capture_rng_state([generator])
    save_checkpoint({"fingerprint": {}, "rng": state}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=generator))
    torch.rand(10)
    generator.manual_seed(0)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], [generator])
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=generator))
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]
    assert torch.equal(expected[3], got[3])
    with pytest.raises(ValueError, match="1 data-loader generator state"):
        restore_rng_state(state, [])


def test_resume_with_fds_model_matches_uninterrupted_run(tmp_path: Path) -> None:
    model_mod = pytest.importorskip("alloy_mtl.mtl.models.multitask")
    losses_mod = pytest.importorskip("alloy_mtl.mtl.losses.task_losses")
    from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, fit_target_stats, make_dataloader
    from alloy_mtl.mtl.tasks import parse_tasks

    tasks = parse_tasks(
        {
            "alloy": {"kind": "classification", "num_outputs": 5},
            "thickness": {"kind": "regression", "fds": {"enabled": True, "bins": 4, "start_epoch": 1}},
        }
    )
    rng = np.random.default_rng(0)
    images = rng.random((16, 1, 8, 8)).astype(np.float16)
    targets = {"alloy": rng.integers(0, 5, 16), "thickness": rng.random(16) * 10}
    stats = fit_target_stats(targets)
    dataset = ArrayTaskDataset(images, targets, target_stats=stats)
    train_targets = {k: dataset.targets[k] for k in targets}

    def run(directory: Path, epochs: int, resume: bool) -> Trainer:
        seed_everything(0)
        model = model_mod.build_model(
            "fnn", 1, 8, tasks, fnn_hidden=(8,), hidden=8, fds_train_targets=train_targets
        )
        settings = {
            "epochs": epochs, "progress_bar": False, "device": "cpu", "restore_best": False,
            "early_stopping": {"min_epochs": 0},
        }  # fmt: skip
        losses = losses_mod.build_task_losses(tasks, train_targets)
        trainer = Trainer(model, tasks, losses, settings, callbacks=[CheckpointCallback(directory, resume)])
        trainer.fit(make_dataloader(dataset, 8, shuffle=True), make_dataloader(dataset, 8))
        return trainer

    straight = run(tmp_path / "a", 3, False)
    run(tmp_path / "b", 1, False)
    resumed = run(tmp_path / "b", 3, True)
    assert len(straight.model.fds) == 1
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
