"""The moving average of the weights: it follows the raw run without changing it, is what is validated and
delivered, resumes exactly, and is refused data-parallel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from alloy_mtl.mtl.training.checkpoint_callback import LAST_CHECKPOINT, load_checkpoint

from .test_checkpoint import _fit, _trainer
from .test_trainer import fit, make_trainer

EMA = {"enabled": True, "decay": 0.9}


def test_the_average_rides_along_without_changing_the_raw_run(tmp_path: Path) -> None:
    plain = make_trainer(tmp_path / "plain", epochs=3, restore_best=False)
    averaged = make_trainer(tmp_path / "ema", epochs=3, restore_best=False, ema=EMA)
    plain_history, averaged_history = fit(plain), fit(averaged)
    train_columns = [c for c in plain_history if c.startswith("train_")]
    pd.testing.assert_frame_equal(plain_history[train_columns], averaged_history[train_columns])
    assert not plain_history["val_loss"].equals(averaged_history["val_loss"])  # other weights validated

    last = load_checkpoint(tmp_path / "ema" / LAST_CHECKPOINT)
    for key, value in plain.model.state_dict().items():  # the raw weights are the plain run's
        assert torch.equal(last["model"][key], value), key
    delivered = averaged.model.state_dict()
    assert all(torch.equal(delivered[k], v) for k, v in last["ema"].items())  # the average is delivered
    assert any(not torch.equal(last["model"][k], v) for k, v in last["ema"].items())


def test_the_best_checkpoint_keeps_the_averaged_weights() -> None:
    trainer = make_trainer(epochs=3, ema=EMA, early_stopping={"enabled": False})
    history = fit(trainer)
    best = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    assert trainer.tracker.best_epoch == best
    assert trainer.best_state is not None
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, trainer.best_state[key]), key
    assert trainer.ema is not None and trainer.evaluated_model is trainer.ema.module
    plain = make_trainer()
    assert plain.ema is None and plain.evaluated_model is plain.model


def test_a_resumed_averaged_run_ends_as_the_uninterrupted_one(tmp_path: Path) -> None:
    straight = _trainer(tmp_path / "straight", epochs=4, resume=False, method="equal", ema=EMA)
    history = _fit(straight)
    _fit(_trainer(tmp_path / "split", epochs=2, resume=False, method="equal", ema=EMA))
    resumed = _trainer(tmp_path / "split", epochs=4, resume=True, method="equal", ema=EMA)
    resumed_history = _fit(resumed)
    pd.testing.assert_frame_equal(
        history.drop(columns="epoch_time_s"), resumed_history.drop(columns="epoch_time_s")
    )
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_bad_averaging_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="ema.decay"):
        make_trainer(ema={"enabled": True, "decay": 1.0})
