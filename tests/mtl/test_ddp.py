"""Data-parallel training: torchrun replicas stay identical and equal one process on the global batch;
per-rank samplers, on-device batches and the rank-0-only writers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from alloy_mtl.mtl.gradients import GradientMethod
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, make_dataloader
from alloy_mtl.mtl.loading.device_batches import DeviceBatches, use_device_data
from alloy_mtl.mtl.loading.samplers import ShardedClassBalancedSampler, ShardSampler
from alloy_mtl.mtl.parallel.ddp import DDPStrategy, replicas_max_difference
from alloy_mtl.mtl.parallel.ddp_trainer import DistributedTrainer
from alloy_mtl.mtl.parallel.process_group import is_main_process, setup_distributed
from alloy_mtl.mtl.training.callbacks import LoggingCallback
from alloy_mtl.mtl.training.checkpoint_callback import CheckpointCallback
from alloy_mtl.mtl.training.trainer import Trainer
from tests.subprocesses import run_child, torchrun

from .test_trainer import LOSSES, TASKS, StandInModel, make_data, make_loaders

WORKER = Path(__file__).with_name("ddp_worker.py")
METHODS = ("equal", "pcgrad", "upgrad", "gradnorm", "uncertainty")


# ------------------------------------------------------------------------------ two torchrun processes
@pytest.mark.slow
def test_torchrun_replicas_are_identical_and_equal_one_process_on_the_global_batch(tmp_path: Path) -> None:
    run_child([*torchrun(2), str(WORKER), str(tmp_path)])
    for method in METHODS:
        rank0, rank1, single = (
            torch.load(tmp_path / f"{method}-{who}.pt") for who in ("rank0", "rank1", "reference")
        )
        assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), f"{method}: replicas differ"
        for key, value in rank0.items():
            # the unknown-material score inverts a covariance of the features: differences at the weights'
            # 1e-6 come back multiplied by its condition number (at most ~1e3 with its ridge)
            scale = float(value.abs().max()) if key.startswith("ood.") and value.numel() else 0.0
            tolerance = {"rtol": 1e-2, "atol": 1e-2 * scale} if scale else {"rtol": 1e-5, "atol": 1e-6}
            torch.testing.assert_close(value, single[key], **tolerance, msg=f"{method}: {key}")
    equal, pcgrad = (torch.load(tmp_path / f"{m}-reference.pt") for m in ("equal", "pcgrad"))
    assert any(not torch.allclose(equal[k], pcgrad[k]) for k in equal)  # the runs trained, methods differ
    # only rank 0 wrote checkpoints; both ranks stopped together
    assert (tmp_path / "writes-rank1.txt").read_text() == ""
    written = (tmp_path / "writes-rank0.txt").read_text().split()
    assert {Path(p).parent.name for p in written} == {f"ckpt-{m}" for m in (*METHODS, "resume")}
    resumed, uninterrupted = (torch.load(tmp_path / name) for name in ("resumed-rank1.pt", "equal-rank1.pt"))
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)  # resume under DDP is exact
    stops = [json.loads((tmp_path / f"stops-rank{r}.json").read_text()) for r in (0, 1)]
    assert stops[0] == stops[1]
    assert stops[0]["diverged"] is True


# ------------------------------------------------------------------------------------------- samplers
def test_sharded_class_balanced_sampler_partitions_the_shared_draw() -> None:
    labels = np.array([0] * 40 + [1] * 8 + [2] * 2 + [-1] * 3)
    shards = [ShardedClassBalancedSampler(labels, 2, rank, seed=7) for rank in (0, 1)]
    for shard in shards:
        shard.set_epoch(3)
    draw = shards[0].epoch_draw()
    assert draw == shards[1].epoch_draw()  # the same draw on every rank, from the shared seed
    parts = [list(shard) for shard in shards]
    assert len(parts[0]) == len(parts[1]) == len(shards[0]) == len(labels) // 2
    merged = [index for pair in zip(*parts, strict=True) for index in pair]
    assert merged == draw  # disjoint positions that together are the epoch's draw
    counts = np.bincount(labels[np.array(draw)][labels[np.array(draw)] >= 0], minlength=3)
    assert counts.min() > 0.4 * counts.max()  # balanced: the 2-sample class is drawn like the others
    shards[0].set_epoch(4)
    assert shards[0].epoch_draw() != draw
    with pytest.raises(ValueError, match="rank 2"):
        ShardedClassBalancedSampler(labels, 2, 2)


def test_shard_sampler_partitions_an_eval_split_without_padding() -> None:
    shards = [list(ShardSampler(11, 3, rank)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))


# ----------------------------------------------------------------------------------- on-device batches
def _dataset() -> ArrayTaskDataset:
    images, targets = make_data()
    return ArrayTaskDataset(images, targets, np.arange(5, 37))


def _same_batches(first: object, second: object) -> bool:
    pairs = list(zip(first, second, strict=True))  # type: ignore[call-overload]
    for (a_img, a_t, a_m), (b_img, b_t, b_m) in pairs:
        assert a_img.dtype == b_img.dtype
        torch.testing.assert_close(a_img, b_img, rtol=0, atol=0)
        for task in a_t:
            torch.testing.assert_close(a_t[task], b_t[task], rtol=0, atol=0, equal_nan=True)
            assert torch.equal(a_m[task], b_m[task])
    return bool(pairs)


def test_device_batches_yield_the_loaders_batches_in_the_same_order() -> None:
    dataset = _dataset()
    loader = make_dataloader(dataset, 6, shuffle=True, seed=3)
    batches = DeviceBatches(dataset, 6, "cpu", shuffle=True, seed=3)
    assert len(batches) == len(loader) == 6
    for _ in range(2):  # two epochs: the order advances alike
        assert _same_batches(loader, batches)
    sampler = DistributedSampler(dataset, 2, 1, shuffle=True, seed=1, drop_last=True)
    loader = make_dataloader(dataset, 5, sampler=sampler)
    assert _same_batches(loader, DeviceBatches(dataset, 5, "cpu", sampler=sampler, drop_last=False))
    assert DeviceBatches(dataset, 5, "cpu", drop_last=True).__len__() == 6


def test_device_data_setting() -> None:
    cpu = torch.device("cpu")
    assert use_device_data(True, cpu, 10**12) is True
    assert use_device_data(False, cpu, 1) is False
    assert use_device_data("auto", cpu, 1) is False  # the CPU gains nothing but skipped collation


# ----------------------------------------------------------------------------------------- rank 0 only
def test_only_rank_zero_writes_checkpoints_and_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from .test_trainer import make_trainer

    trainer = make_trainer(epochs=1)
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    with caplog.at_level(logging.INFO, logger="alloy_mtl.mtl.training.callbacks"):
        CheckpointCallback(tmp_path).on_epoch_end(trainer, 1, {"train_loss": 1.0})
        LoggingCallback().on_epoch_end(trainer, 1, {"train_loss": 1.0})
    assert list(tmp_path.iterdir()) == []
    assert "epoch 1" not in caplog.text
    monkeypatch.setenv("RANK", "0")
    CheckpointCallback(tmp_path).on_epoch_end(trainer, 1, {"train_loss": 1.0})
    assert (tmp_path / "last.pt").is_file()


def test_setup_distributed_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert setup_distributed("auto") is None
    assert setup_distributed(False) is None
    with pytest.raises(ValueError, match="torchrun"):
        setup_distributed(True)


# ------------------------------------------------------------------------ one-process group in-process
@pytest.fixture
def process_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield setup_distributed(True, "cpu")
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["equal", "pcgrad"])
def test_distributed_trainer_in_a_group_of_one_matches_the_plain_trainer(process_group, method: str) -> None:
    from .test_trainer import make_trainer

    settings = {"gradient_method": {"name": method}, "epochs": 2}
    plain = make_trainer(**settings)
    train, val, _ = make_loaders()
    plain_history = plain.fit(train, val)
    reference = make_trainer(**settings)  # same seed, same initial weights
    strategy = DDPStrategy(process_group)
    trainer = Trainer(reference.model, TASKS, LOSSES, reference.settings, strategy=strategy)
    assert isinstance(trainer.method, GradientMethod) and trainer.method.sync is process_group
    train, val, _ = make_loaders()
    history = trainer.fit(train, val)
    assert replicas_max_difference(trainer.model, process_group) == 0.0
    for key in ("train_loss", "val_loss", "val_alloy_acc", "val_alloy_ap"):
        np.testing.assert_allclose(history[key], plain_history[key], rtol=1e-6)
    for ours, theirs in zip(trainer.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_pcgrad_fast_is_refused_data_parallel(process_group) -> None:
    with pytest.raises(ValueError, match="pcgrad_fast"):
        Trainer(
            StandInModel(),
            TASKS,
            LOSSES,
            {"device": "cpu", "gradient_method": {"name": "pcgrad_fast"}},
            strategy=DDPStrategy(process_group),
        )


def test_weight_averaging_is_refused_data_parallel(process_group) -> None:
    with pytest.raises(ValueError, match="training.ema"):
        Trainer(
            StandInModel(),
            TASKS,
            LOSSES,
            {"device": "cpu", "ema": {"enabled": True}},
            strategy=DDPStrategy(process_group),
        )


def test_the_distributed_trainer_name_builds_a_trainer_with_the_ddp_strategy(process_group) -> None:
    trainer = DistributedTrainer(
        StandInModel(), TASKS, LOSSES, {"device": "cpu"}, context=process_group, find_unused_parameters=True
    )
    assert isinstance(trainer, Trainer) and isinstance(trainer.strategy, DDPStrategy)
    assert trainer.strategy.context is process_group and trainer.strategy.find_unused_parameters
