"""The data-parallel strategy seam: the trainer calls its strategy at the documented points, in order, and
acts on what the strategy returns (a trainer that bypassed it would not see these effects)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from alloy_mtl.mtl.device import seed_everything
from alloy_mtl.mtl.gradients import GradientMethod
from alloy_mtl.mtl.parallel.ddp import DDPStrategy
from alloy_mtl.mtl.parallel.strategy import DataParallelStrategy, SingleDevice
from alloy_mtl.mtl.trainer_settings import TrainerSettings
from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.mtl.training.forward import EncodeAndHeads
from alloy_mtl.mtl.training.meter import EpochMeter
from alloy_mtl.mtl.training.trainer import Trainer

from .test_trainer import LOSSES, TASKS, StandInModel, make_loaders

STEPS = 4  # 32 training rows in batches of 8


def build(strategy: DataParallelStrategy | None = None, **overrides: Any) -> Trainer:
    seed_everything(0)
    model = StandInModel()
    model.target_scaler.set_stats(make_loaders()[2])
    settings = {
        "epochs": 2,
        "lr": 1e-2,
        "progress_bar": False,
        "device": "cpu",
        "early_stopping": {"enabled": False},
        **overrides,
    }
    return Trainer(model, TASKS, LOSSES, settings, strategy=strategy)


def fit(trainer: Trainer) -> Any:
    train, val, _ = make_loaders()
    return trainer.fit(train, val)


class Recording(SingleDevice):
    """Records every call (name and arguments) and whether the training forward ran inside ``no_sync``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.unsynced = False
        self.forwards: list[bool] = []

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def configure(self, settings: TrainerSettings) -> TrainerSettings:
        self._record("configure", settings)
        return super().configure(settings)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        self._record("prepare_model", model)
        return super().prepare_model(model)

    def prepare_method(self, method: GradientMethod) -> None:
        self._record("prepare_method", method)

    def callbacks(self) -> list[Callback]:
        self._record("callbacks")
        return []

    def wrap(self, module: nn.Module) -> nn.Module:
        self._record("wrap", module)
        module.register_forward_hook(lambda *_: self.forwards.append(self.unsynced))
        return module

    def no_sync(self) -> AbstractContextManager[object]:
        self._record("no_sync")

        @contextmanager
        def unsynced() -> Any:
            self.unsynced = True
            yield
            self.unsynced = False

        return unsynced()

    def average_gradients(self, params: Sequence[Tensor]) -> None:
        self._record("average_gradients", list(params))

    def reduce_metrics(self, meter: EpochMeter) -> None:
        self._record("reduce_metrics", meter)

    def broadcast_buffers(self, model: nn.Module) -> None:
        self._record("broadcast_buffers", model)

    def broadcast_flag(self, flag: bool) -> bool:
        self._record("broadcast_flag", flag)
        return flag

    def set_epoch(self, loader: Iterable[object], epoch: int) -> None:
        self._record("set_epoch", loader, epoch)

    def barrier(self) -> None:
        self._record("barrier")

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def arguments(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]


def test_the_trainer_calls_its_strategy_at_every_point_in_order() -> None:
    strategy = Recording()
    trainer = build(strategy, gradient_method={"name": "pcgrad"}, precise_bn={"enabled": True})
    built = ["configure", "prepare_model", "callbacks", "prepare_method", "wrap"]
    assert strategy.names() == built
    train, val, _ = make_loaders()
    trainer.fit(train, val)
    epoch = [
        "set_epoch",
        *["no_sync", "average_gradients"] * STEPS,
        "broadcast_buffers",  # after the steps
        "reduce_metrics",  # train meter
        "broadcast_buffers",  # after precise BN
        "reduce_metrics",  # validation meter
        "broadcast_flag",  # stop?
    ]
    assert strategy.names() == [*built, "barrier", *epoch, *epoch]
    # with what: the loader and epoch, the heads (per-task backward passes), the model, the method
    assert strategy.arguments("set_epoch") == [(train, 1), (train, 2)]
    heads = [p for params in trainer.head_params.values() for p in params]
    for (params,) in strategy.arguments("average_gradients"):
        assert len(params) == len(heads) and all(a is b for a, b in zip(params, heads, strict=True))
    assert all(model is trainer.model for (model,) in strategy.arguments("broadcast_buffers"))
    assert strategy.arguments("prepare_method") == [(trainer.method,)]
    (wrapped,) = strategy.arguments("wrap")[0]
    assert isinstance(wrapped, EncodeAndHeads) and wrapped.model is trainer.model
    # every training forward ran through the wrapped module, inside no_sync; evaluation did not use it
    assert strategy.forwards == [True] * (2 * STEPS)


def test_one_backward_method_runs_synced_and_hands_over_its_own_parameters() -> None:
    strategy = Recording()
    trainer = build(strategy, gradient_method={"name": "uncertainty"}, epochs=1)
    fit(trainer)
    assert "no_sync" not in strategy.names()
    assert strategy.forwards == [False] * STEPS
    for (params,) in strategy.arguments("average_gradients"):
        assert len(params) == 1 and params[0] is trainer.method.parameters()[0]


class StopNow(SingleDevice):
    def broadcast_flag(self, flag: bool) -> bool:
        return True  # the main process decided to stop


class DropHeadGradients(SingleDevice):
    def average_gradients(self, params: Sequence[Tensor]) -> None:
        for param in params:
            param.grad = None


class DoubleLosses(SingleDevice):
    def reduce_metrics(self, meter: EpochMeter) -> None:
        meter.sums = {k: v * 2 if k.endswith("_loss") else v for k, v in meter.sums.items()}


def test_the_trainer_acts_on_what_the_strategy_decides() -> None:
    assert len(fit(build(StopNow(), epochs=3))) == 1  # early stopping is off: only the strategy stops it

    trainer = build(DropHeadGradients(), gradient_method={"name": "pcgrad"}, epochs=1)
    heads = {k: v.clone() for k, v in trainer.model.heads.state_dict().items()}
    backbone = {k: v.clone() for k, v in trainer.model.backbone.state_dict().items()}
    fit(trainer)
    assert all(torch.equal(v, heads[k]) for k, v in trainer.model.heads.state_dict().items())
    assert not all(torch.equal(v, backbone[k]) for k, v in trainer.model.backbone.state_dict().items())

    plain, doubled = fit(build(epochs=1)), fit(build(DoubleLosses(), epochs=1))
    for key in ("train_alloy_loss", "val_thickness_loss", "val_loss"):
        assert doubled[key].iloc[0] == pytest.approx(2 * plain[key].iloc[0])


def test_single_device_is_the_default_and_leaves_the_method_alone() -> None:
    trainer = build()
    assert isinstance(trainer.strategy, SingleDevice) and trainer.method.sync is None
    assert isinstance(trainer.train_module, EncodeAndHeads)


def test_every_strategy_implements_the_whole_contract() -> None:
    required = DataParallelStrategy.__abstractmethods__
    assert {"wrap", "no_sync", "average_gradients", "reduce_metrics", "broadcast_buffers"} <= required
    for strategy in (SingleDevice, DDPStrategy):
        assert not strategy.__abstractmethods__, strategy
