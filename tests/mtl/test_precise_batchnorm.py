"""Precise BatchNorm: statistics recomputed as the plain mean over training batches, nothing else touched."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from alloy_mtl.mtl.optim.weight_averaging import recompute_batchnorm_statistics

from .test_trainer import StandInModel, fit, make_trainer


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 2))


def test_statistics_are_the_plain_mean_of_the_first_batches() -> None:
    net = _net()
    norm = net[1]
    batches = [torch.randn(8, 4) * (i + 1) + i for i in range(5)]
    net.eval()
    rng = torch.get_rng_state()
    used = recompute_batchnorm_statistics(net, batches, net, batches=3)
    assert used == 3
    with torch.no_grad():
        hidden = [net[0](b) for b in batches[:3]]
    expected_mean = torch.stack([h.mean(0) for h in hidden]).mean(0)
    expected_var = torch.stack([h.var(0, unbiased=True) for h in hidden]).mean(0)
    torch.testing.assert_close(norm.running_mean, expected_mean)
    torch.testing.assert_close(norm.running_var, expected_var)
    assert norm.momentum == 0.1 and not net.training and not norm.training
    assert torch.equal(torch.get_rng_state(), rng)  # dropout stayed in eval mode: no random draws


def test_a_model_without_batchnorm_is_left_alone() -> None:
    net = nn.Sequential(nn.Linear(4, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert recompute_batchnorm_statistics(net, [torch.randn(2, 4)], net, batches=1) == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


class _NormedModel(StandInModel):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU())


def test_trainer_validates_with_recomputed_statistics_and_keeps_the_raw_trajectory_otherwise() -> None:
    plain = make_trainer(model_class=_NormedModel, epochs=2, restore_best=False)
    precise = make_trainer(
        model_class=_NormedModel, epochs=1, restore_best=False, precise_bn={"batches": 2, "enabled": True}
    )
    plain_history, precise_history = fit(plain), fit(precise)
    # the first epoch trains identically; the recomputed statistics change what validation sees
    assert plain_history["train_loss"].iloc[0] == precise_history["train_loss"].iloc[0]
    assert plain_history["val_loss"].iloc[0] != precise_history["val_loss"].iloc[0]
    norm = precise.model.backbone[2]
    assert norm.momentum == 0.1 and int(norm.num_batches_tracked) == 2  # two batches, counted afresh
    again = make_trainer(model_class=_NormedModel, epochs=2, restore_best=False, precise_bn={"enabled": True})
    first = fit(again)
    second = fit(
        make_trainer(model_class=_NormedModel, epochs=2, restore_best=False, precise_bn={"enabled": True})
    )
    pd.testing.assert_frame_equal(first.drop(columns="epoch_time_s"), second.drop(columns="epoch_time_s"))


def test_a_bad_batch_count_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="precise_bn.batches"):
        make_trainer(precise_bn={"enabled": True, "batches": 0})
