"""The one-cycle schedule: its shape, that the trainer sets it before every step, and exact resumption."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from alloy_mtl.mtl.device import seed_everything
from alloy_mtl.mtl.optim.schedules import ProgressSchedule, build_schedule
from alloy_mtl.mtl.trainer_settings import TrainerSettings
from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.mtl.training.checkpoint_callback import CheckpointCallback
from alloy_mtl.mtl.training.trainer import Trainer

from .test_trainer import LOSSES, TASKS, StandInModel, fit, make_loaders, make_trainer

ONE_CYCLE = {"name": "one_cycle", "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}


def _schedule(lr: float = 0.1, **schedule: Any) -> ProgressSchedule:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    settings = TrainerSettings.model_validate({"lr": lr, "lr_scheduler": {**ONE_CYCLE, **schedule}})
    built = build_schedule(optimizer, settings)
    assert isinstance(built, ProgressSchedule)
    return built


def _lr_at(schedule: ProgressSchedule, progress: float) -> float:
    schedule.set_progress(progress)
    return float(schedule.optimizer.param_groups[0]["lr"])


def test_one_cycle_rises_to_the_peak_then_falls_to_the_floor() -> None:
    schedule = _schedule()
    assert _lr_at(schedule, 0.0) == pytest.approx(0.01)  # lr / div_factor
    assert _lr_at(schedule, 0.25) == pytest.approx(0.1)  # the peak after pct_start
    assert _lr_at(schedule, 1.0) == pytest.approx(0.1 / 1000)  # lr / (div_factor * final_div_factor)
    assert _lr_at(schedule, 0.125) == pytest.approx(0.01 + 0.09 * 0.5)  # half-way up a cosine
    rising = [_lr_at(schedule, p) for p in (0.0, 0.05, 0.1, 0.2, 0.25)]
    falling = [_lr_at(schedule, p) for p in (0.25, 0.4, 0.6, 0.8, 1.0)]
    assert rising == sorted(rising) and falling == sorted(falling, reverse=True)
    assert _lr_at(schedule, 1.5) == _lr_at(schedule, 1.0)  # past the plan it stays at the floor


def test_one_cycle_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="pct_start"):
        make_trainer(lr_scheduler={"name": "one_cycle", "pct_start": 1.0})
    with pytest.raises(ValueError, match="div_factor"):
        make_trainer(lr_scheduler={"name": "one_cycle", "div_factor": 0.5})


class _StepRecorder:
    """Records the learning rate the optimizer holds at every step."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def attach(self, trainer: Trainer) -> None:
        step = trainer.optimizer.step

        def recording_step(*args: Any, **kwargs: Any) -> Any:
            self.lrs.append(float(trainer.optimizer.param_groups[0]["lr"]))
            return step(*args, **kwargs)

        trainer.optimizer.step = recording_step  # type: ignore[method-assign]


def test_trainer_sets_the_rate_before_every_step_from_the_share_of_training_done() -> None:
    trainer = make_trainer(epochs=3, lr=0.1, lr_scheduler=ONE_CYCLE, restore_best=False)
    recorder = _StepRecorder()
    recorder.attach(trainer)
    history = fit(trainer)
    steps_per_epoch = len(make_loaders()[0])
    total = 3 * steps_per_epoch
    assert len(recorder.lrs) == total
    reference = _schedule()
    expected = [_lr_at(reference, step / total) for step in range(total)]
    assert recorder.lrs == pytest.approx(expected)
    assert max(recorder.lrs) <= 0.1 + 1e-12 and recorder.lrs[0] == pytest.approx(0.01)
    # the history's lr is the rate each epoch starts with
    assert history["lr"].tolist() == pytest.approx([expected[e * steps_per_epoch] for e in range(3)])


class _Interrupt(Exception):
    pass


class _StopAfter(Callback):
    """Raises after ``epoch``'s checkpoint is written, as a killed run would stop."""

    order = 200

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Stop the run after ``self.epoch``."""
        if epoch == self.epoch:
            raise _Interrupt


def _trainer(directory: Path, resume: bool, *extra: Any) -> Trainer:
    seed_everything(0 if not resume else 123)  # a resumed run's fresh weights must be overridden
    model = StandInModel()
    model.target_scaler.set_stats(make_loaders()[2])
    settings = {
        "epochs": 4, "lr": 0.05, "progress_bar": False, "device": "cpu", "restore_best": False,
        "early_stopping": {"enabled": False}, "lr_scheduler": ONE_CYCLE,
    }  # fmt: skip
    callbacks = [CheckpointCallback(directory, resume), *extra]
    return Trainer(model, TASKS, LOSSES, settings, callbacks=callbacks)


def test_a_killed_one_cycle_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    straight = _trainer(tmp_path / "straight", False)
    history = fit(straight)
    with pytest.raises(_Interrupt):
        fit(_trainer(tmp_path / "split", False, _StopAfter(2)))
    resumed = _trainer(tmp_path / "split", True)
    resumed_history = fit(resumed)
    pd.testing.assert_frame_equal(
        history.drop(columns="epoch_time_s"), resumed_history.drop(columns="epoch_time_s")
    )
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert not math.isclose(history["lr"].iloc[0], history["lr"].iloc[-1])


def test_reconfiguring_the_optimizer_moves_the_one_cycle_peak() -> None:
    trainer = make_trainer(epochs=2, lr=0.1, lr_scheduler=ONE_CYCLE, restore_best=False)
    fit(trainer)
    trainer.reconfigure_optimizer("adam", lr=0.02, weight_decay=0.0)
    assert (
        isinstance(trainer.scheduler, ProgressSchedule) and trainer.scheduler.optimizer is trainer.optimizer
    )
    trainer.scheduler.set_progress(0.25)
    assert trainer.lr == pytest.approx(0.02)
