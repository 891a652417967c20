"""Trainer: history, early stopping, LR schedule, determinism, callbacks, predict; torch datasets/loaders."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import Tensor, nn

from alloy_mtl.config import ParameterError
from alloy_mtl.mtl.device import autocasts, memory_format, seed_everything
from alloy_mtl.mtl.loading.datasets import (
    ArrayTaskDataset,
    fit_target_stats,
    loader_generators,
    make_dataloader,
)
from alloy_mtl.mtl.models.multitask import TargetScaler
from alloy_mtl.mtl.training.callbacks import Callback, MetricTracker
from alloy_mtl.mtl.training.checkpoint_callback import CheckpointCallback
from alloy_mtl.mtl.training.predict import predict
from alloy_mtl.mtl.training.trainer import Trainer


@dataclass(frozen=True)
class Task:
    """Minimal task spec (name, kind, weight, num_outputs) as the trainer reads it."""

    name: str
    kind: str
    weight: float = 1.0
    num_outputs: int = 1


TASKS = [Task("alloy", "classification", 1.0, 3), Task("thickness", "regression", 0.5)]


class StandInModel(nn.Module):
    """Follows the mtl contract: encode / forward_heads / forward / shared_parameters / task_parameters."""

    def __init__(self, tasks: list[Task] = TASKS, in_features: int = 16, width: int = 8) -> None:
        super().__init__()
        self.target_scaler = TargetScaler([t.name for t in tasks if t.kind == "regression"])
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width), nn.ReLU())
        self.kinds = {t.name: t.kind for t in tasks}
        self.heads = nn.ModuleDict(
            {
                t.name: nn.Sequential(
                    nn.Linear(width, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, t.num_outputs)
                )
                for t in tasks
            }
        )

    def encode(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward_heads(self, features: Tensor, **_: object) -> dict[str, Tensor]:
        out = {}
        for name, head in self.heads.items():
            y = head(features)
            out[name] = y if self.kinds[name] == "classification" else y.squeeze(-1)
        return out

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.forward_heads(self.encode(x))

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        return list(self.heads[task].parameters())


def masked_ce(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    per = F.cross_entropy(pred, target.clamp_min(0), reduction="none")
    return (per * mask).sum() / mask.sum().clamp_min(1)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    per = (pred - torch.nan_to_num(target)) ** 2
    return (per * mask).sum() / mask.sum().clamp_min(1)


LOSSES = {"alloy": masked_ce, "thickness": masked_mse}


def make_data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, 4, 4)).astype(np.float16)
    alloy = (images.reshape(n, -1)[:, :3].argmax(1)).astype(np.int64)
    thickness = 5.0 + 3.0 * images.reshape(n, -1)[:, 5].astype(np.float64) + 0.1 * rng.standard_normal(n)
    alloy[::7] = -1
    thickness[::5] = np.nan
    return images, {"alloy": alloy, "thickness": thickness}


def make_loaders(batch_size: int = 8, seed: int = 0) -> tuple:
    images, targets = make_data()
    train_rows, val_rows = np.arange(32), np.arange(32, 48)
    stats = fit_target_stats(targets, train_rows)
    train = ArrayTaskDataset(images, targets, train_rows, target_stats=stats)
    val = ArrayTaskDataset(images, targets, val_rows, target_stats=stats)
    return (
        make_dataloader(train, batch_size, shuffle=True, seed=seed),
        make_dataloader(val, batch_size, seed=seed),
        stats,
    )


def make_trainer(
    tmp_path: Path | None = None, *, model_class: type[StandInModel] | None = None, **overrides: object
) -> Trainer:
    """A trainer on the stand-in model (or ``model_class``); ``overrides`` are training settings (YAML keys,
    nested sections)."""
    seed_everything(0)
    model = (model_class or StandInModel)()
    _, _, stats = make_loaders()
    model.target_scaler.set_stats(stats)
    stopping = {"min_epochs": 0, **overrides.pop("early_stopping", {})}  # type: ignore[dict-item]
    settings = {"epochs": 3, "lr": 1e-2, "progress_bar": False, "device": "cpu", "early_stopping": stopping}
    callbacks = [] if tmp_path is None else [CheckpointCallback(tmp_path)]
    return Trainer(model, TASKS, LOSSES, {**settings, **overrides}, callbacks=callbacks)


def fit(trainer: Trainer) -> pd.DataFrame:
    train_loader, val_loader, _ = make_loaders()
    return trainer.fit(train_loader, val_loader)


# --------------------------------------------------------------------------------------------- history
def test_history_has_contract_columns() -> None:
    history = fit(make_trainer(gradient_method={"name": "pcgrad"}))
    expected = {
        "epoch", "lr", "epoch_time_s", "train_loss", "val_loss",
        "train_alloy_loss", "val_alloy_loss", "train_thickness_loss", "val_thickness_loss",
        "train_alloy_acc", "val_alloy_acc", "val_thickness_mae",
        "weight_alloy", "weight_thickness", "grad_cos_alloy__thickness", "conflict_share",
    }  # fmt: skip
    assert expected <= set(history.columns)
    assert history["epoch"].tolist() == [1, 2, 3]
    row = history.iloc[-1]
    assert row["train_loss"] == pytest.approx(row["train_alloy_loss"] + 0.5 * row["train_thickness_loss"])
    assert row["weight_thickness"] == 0.5
    assert 0.0 <= row["conflict_share"] <= 1.0


def test_val_metrics_match_hand_computation() -> None:
    trainer = make_trainer(epochs=1)
    train_loader, val_loader, stats = make_loaders()
    trainer.fit(train_loader, val_loader)
    metrics = trainer.evaluate(val_loader)
    out = predict(trainer.model, val_loader, TASKS)
    mask_a, mask_t = out["alloy_mask"], out["thickness_mask"]
    acc = (out["alloy_pred"][mask_a] == out["alloy_target"][mask_a]).mean()
    mae = np.abs(out["thickness_pred"][mask_t] - out["thickness_target"][mask_t]).mean()
    assert metrics["val_alloy_acc"] == pytest.approx(acc)
    assert metrics["val_thickness_mae"] == pytest.approx(mae, rel=1e-5)
    # original units: targets are thickness in mm again
    images, targets = make_data()
    assert out["thickness_target"][mask_t] == pytest.approx(targets["thickness"][32:48][mask_t], rel=1e-5)
    assert np.allclose(out["alloy_probs"].sum(1), 1.0, atol=1e-6)
    labels, probs = out["alloy_target"][mask_a], out["alloy_probs"][mask_a]
    present = np.unique(labels)
    ap = np.mean([average_precision_score(labels == c, probs[:, c]) for c in present])
    assert metrics["val_alloy_ap"] == pytest.approx(ap, rel=1e-5)
    assert "train_alloy_ap" not in trainer.history[0]  # AP only where the whole split is scored


# ------------------------------------------------------------------------------ stopping / schedule
def test_metric_tracker_patience_and_min_epochs() -> None:
    tracker = MetricTracker(mode="max", patience=2, min_epochs=5)
    stops = []
    improved = []
    for epoch, value in enumerate([0.5, 0.6, 0.6, 0.55, 0.59, 0.7], start=1):
        improved.append(tracker.update(epoch, value))
        stops.append(tracker.should_stop(epoch))
    # patience exhausted at epoch 4 but min_epochs holds it until 5; an equal value is no improvement
    assert improved == [True, True, False, False, False, True]
    assert stops == [False, False, False, False, True, False]
    assert tracker.best_epoch == 6 and tracker.best == 0.7


@pytest.mark.parametrize(("min_epochs", "expected_epochs"), [(0, 3), (5, 5)])
def test_early_stopping_respects_min_epochs_and_patience(min_epochs: int, expected_epochs: int) -> None:
    # lr so small that val_loss never improves by min_delta after epoch 1
    trainer = make_trainer(
        epochs=8,
        lr=1e-12,
        early_stopping={"patience": 2, "min_epochs": min_epochs, "min_delta": 1e-3},
        lr_scheduler={"patience": 100},
    )
    history = fit(trainer)
    assert len(history) == expected_epochs
    assert trainer.tracker.best_epoch == 1


def test_reduce_lr_on_plateau_lowers_lr_after_patience() -> None:
    # lr so small that the validation accuracy stays exactly constant: no epoch after the first improves
    trainer = make_trainer(
        epochs=6, lr=1e-6, lr_scheduler={"patience": 1, "factor": 0.5}, early_stopping={"enabled": False},
        monitor={"metric": "val_alloy_acc", "mode": "max"},
    )  # fmt: skip
    history = fit(trainer)
    assert history["val_alloy_acc"].nunique() == 1
    # epoch 1 best; epochs 2, 3 bad -> 2 bad epochs > patience 1 after epoch 3: lr halves from epoch 4,
    # the counter restarts, and after epochs 4, 5 it halves again for epoch 6
    assert history["lr"].tolist() == pytest.approx([1e-6, 1e-6, 1e-6, 5e-7, 5e-7, 2.5e-7], rel=1e-9)


def test_monitor_must_be_an_epoch_metric() -> None:
    trainer = make_trainer(monitor={"metric": "val_nothing"})
    with pytest.raises(ValueError, match="monitor 'val_nothing' is not an epoch metric"):
        fit(trainer)


def test_monitoring_val_metric_without_val_loader_fails_before_training() -> None:
    trainer = make_trainer()
    train_loader, _, _ = make_loaders()
    with pytest.raises(ValueError, match="monitor 'val_loss' needs a val_loader"):
        trainer.fit(train_loader)
    assert trainer.epoch == 0


def test_restore_best_loads_best_epoch_weights(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, epochs=4, monitor={"metric": "val_alloy_acc", "mode": "max"})
    history = fit(trainer)
    best_epoch = int(history["val_alloy_acc"].to_numpy().argmax()) + 1
    assert trainer.tracker.best_epoch == best_epoch
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == best_epoch
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, best["model"][key])


# ------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("method", ["equal", "pcgrad_fast"])
def test_same_seed_gives_identical_history_and_weights(method: str) -> None:
    runs = []
    for _ in range(2):
        trainer = make_trainer(gradient_method={"name": method}, restore_best=False)
        history = fit(trainer).drop(columns="epoch_time_s")
        runs.append((history, trainer.model.state_dict()))
    pd.testing.assert_frame_equal(runs[0][0], runs[1][0])
    for key in runs[0][1]:
        assert torch.equal(runs[0][1][key], runs[1][1][key])


def test_different_seed_changes_the_run() -> None:
    a = fit(make_trainer(seed=0)).drop(columns="epoch_time_s")
    b = fit(make_trainer(seed=1)).drop(columns="epoch_time_s")
    assert not a.equals(b)


# -------------------------------------------------------------------------------------- callbacks
class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.calls.append(("begin",))

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.calls.append(("epoch", epoch, metrics))

    def on_train_end(self, trainer: Trainer, history: pd.DataFrame) -> None:
        self.calls.append(("end", history))


def test_callbacks_called_once_per_epoch_with_metrics() -> None:
    recorder = Recorder()
    trainer = make_trainer(epochs=3)
    trainer.callbacks.append(recorder)
    history = fit(trainer)
    kinds = [c[0] for c in recorder.calls]
    assert kinds == ["begin", "epoch", "epoch", "epoch", "end"]
    for row, call in zip(history.to_dict("records"), recorder.calls[1:4], strict=True):
        assert call[1] == row["epoch"]
        assert call[2]["val_loss"] == row["val_loss"]
    pd.testing.assert_frame_equal(recorder.calls[-1][1], history)


# ----------------------------------------------------------------------------------- config errors
def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ParameterError, match=r"training.learning_rate: unknown key"):
        Trainer(StandInModel(), TASKS, LOSSES, {"learning_rate": 0.1})
    with pytest.raises(ParameterError, match="optimizer 'lbfgs' unknown"):
        Trainer(StandInModel(), TASKS, LOSSES, {"optimizer": "lbfgs"})
    with pytest.raises(ParameterError, match=r"training.lr: got 0, expected greater than 0"):
        Trainer(StandInModel(), TASKS, LOSSES, {"lr": 0})
    with pytest.raises(ParameterError) as err:
        Trainer(
            StandInModel(),
            TASKS,
            LOSSES,
            {"channels_last": "sometimes", "flush_denormal": "often", "amp": "bf16"},
        )
    assert "training.channels_last" in str(err.value) and "training.flush_denormal" in str(err.value)
    assert "training.amp" in str(err.value)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_optimizers_by_name(name: str) -> None:
    trainer = make_trainer(optimizer=name, weight_decay=1e-3, momentum=0.5)
    assert type(trainer.optimizer).__name__.lower() == name
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 1e-3


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_fused_kernels_where_torch_has_them_and_the_same_training(name: str) -> None:
    fused, plain = make_trainer(optimizer=name), make_trainer(optimizer=name, fused_optimizer=False)
    assert bool(fused.optimizer.defaults.get("fused")) is (name != "rmsprop")
    assert not plain.optimizer.defaults.get("fused")
    histories = [fit(t).drop(columns="epoch_time_s") for t in (fused, plain)]
    pd.testing.assert_frame_equal(*histories, rtol=1e-4)


def test_a_rebuilt_optimizer_stays_fused() -> None:
    trainer = make_trainer(optimizer="rmsprop")
    trainer.reconfigure_optimizer("adam", lr=0.01, weight_decay=0.0)
    assert isinstance(trainer.optimizer, torch.optim.Adam) and trainer.optimizer.defaults["fused"]


def test_uncertainty_log_vars_are_optimised_without_weight_decay() -> None:
    trainer = make_trainer(gradient_method={"name": "uncertainty"}, epochs=2)
    before = trainer.method.log_vars.detach().clone()
    fit(trainer)
    assert trainer.optimizer.param_groups[1]["weight_decay"] == 0.0
    assert not torch.equal(before, trainer.method.log_vars.detach())


def test_orphan_parameters_are_rejected() -> None:
    model = StandInModel()
    model.extra = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="neither in shared_parameters"):
        Trainer(model, TASKS, LOSSES, {"progress_bar": False, "device": "cpu"})


# ------------------------------------------------------------------------------------ torch data
def test_dataset_reads_read_only_float16_memmap(tmp_path: Path) -> None:
    images, targets = make_data(n=10)
    path = tmp_path / "images.npy"
    np.save(path, images)
    mm = np.load(path, mmap_mode="r")
    ds = ArrayTaskDataset(mm, targets, indices=[3, 7], target_stats={"thickness": (5.0, 2.0)})
    image, target, mask = ds[1]
    assert image.dtype == torch.float32 and image.shape == (1, 4, 4)
    assert torch.equal(image, torch.from_numpy(images[7].astype(np.float32)))
    image.add_(1.0)  # the item is a copy: writing to it is fine and leaves the memmap alone
    assert np.array_equal(mm[7], images[7])
    assert target["alloy"].dtype == torch.int64 and mask["alloy"].dtype == torch.bool
    assert bool(mask["alloy"]) is bool(targets["alloy"][7] >= 0)
    assert float(target["thickness"]) == pytest.approx((targets["thickness"][7] - 5.0) / 2.0, rel=1e-6)
    missing = ds[0]  # row 3: alloy present, thickness present? row 0/5/... are NaN
    assert len(ds) == 2 and missing[0].shape == (1, 4, 4)


def test_dataset_masks_missing_labels_and_resizes() -> None:
    images, targets = make_data(n=10)
    ds = ArrayTaskDataset(images, targets, image_size=8)
    image, target, mask = ds[0]  # row 0: alloy -1 and thickness NaN
    assert image.shape == (1, 8, 8)
    assert not bool(mask["alloy"]) and int(target["alloy"]) == -1
    assert not bool(mask["thickness"]) and torch.isnan(target["thickness"])


def test_dataset_rejects_bad_input() -> None:
    images, targets = make_data(n=10)
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\)"):
        ArrayTaskDataset(images[0], targets)
    with pytest.raises(ValueError, match=r"target 'alloy' must have shape \(10,\)"):
        ArrayTaskDataset(images, {"alloy": targets["alloy"][:5]})
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        ArrayTaskDataset(images, targets, indices=[0, 10])
    with pytest.raises(ValueError, match=r"target_stats for unknown task\(s\) \['x'\]"):
        ArrayTaskDataset(images, targets, target_stats={"x": (0.0, 1.0)})


def test_fit_target_stats_ignores_missing_and_classification() -> None:
    stats = fit_target_stats({"a": np.array([1, 2]), "t": np.array([1.0, np.nan, 3.0])})
    assert stats == {"t": (2.0, 1.0)}


def test_dataloader_is_seeded_and_exposes_its_generator() -> None:
    images, targets = make_data(n=20)
    ds = ArrayTaskDataset(images, targets)
    orders = []
    for _ in range(2):
        loader = make_dataloader(ds, 5, shuffle=True, seed=3)
        orders.append(torch.cat([b[0].reshape(len(b[0]), -1)[:, 0] for b in loader]))
    assert torch.equal(orders[0], orders[1])
    assert len(loader_generators(loader)) == 1
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make_dataloader(ds, 0)


# -------------------------------------------------------------------------------- integration
def test_trainer_with_build_model_and_build_task_losses() -> None:
    model_mod = pytest.importorskip("alloy_mtl.mtl.models.multitask")
    losses_mod = pytest.importorskip("alloy_mtl.mtl.losses.task_losses")
    from alloy_mtl.mtl.tasks import parse_tasks

    tasks = parse_tasks(
        {
            "alloy": {
                "kind": "classification",
                "target": "alloy",
                "num_outputs": 5,
                "loss": "logit_adjusted",
            },
            "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "huber"},
        }
    )
    rng = np.random.default_rng(0)
    images = rng.random((16, 3, 16, 16)).astype(np.float16)
    targets = {"alloy": rng.integers(0, 5, 16), "thickness": rng.random(16) * 10}
    stats = fit_target_stats(targets)
    dataset = ArrayTaskDataset(images, targets, target_stats=stats)
    seed_everything(0)
    model = model_mod.build_model("fnn", 3, 16, tasks, fnn_hidden=(32,), hidden=16)
    model.target_scaler.set_stats(stats)
    losses = losses_mod.build_task_losses(tasks, {k: dataset.targets[k] for k in targets})
    trainer = Trainer(
        model,
        tasks,
        losses,
        {"epochs": 1, "progress_bar": False, "device": "cpu", "gradient_method": {"name": "pcgrad"}},
    )
    groups = {"shared": model.shared_parameters(), **{t.name: model.task_parameters(t.name) for t in tasks}}
    before = {k: torch.cat([p.detach().reshape(-1) for p in ps]) for k, ps in groups.items()}
    history = trainer.fit(make_dataloader(dataset, 8, shuffle=True), make_dataloader(dataset, 8))
    assert len(history) == 1 and np.isfinite(history["val_loss"].iloc[0])
    for key, params in groups.items():  # two steps moved the backbone and every head
        assert not torch.equal(before[key], torch.cat([p.detach().reshape(-1) for p in params])), key
    out = predict(model, make_dataloader(dataset, 8), tasks)
    assert out["alloy_probs"].shape == (16, 5) and out["thickness_pred"].shape == (16,)


def test_reconfigure_optimizer_mid_run_keeps_model_and_schedule() -> None:
    trainer = make_trainer(epochs=2, optimizer="adam")
    fit(trainer)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    bad_epochs = trainer.scheduler.num_bad_epochs
    trainer.reconfigure_optimizer("sgd", lr=0.05, weight_decay=1e-3, momentum=0.8)
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.scheduler.optimizer is trainer.optimizer
    assert trainer.lr == 0.05 and trainer.settings.optimizer == "sgd"
    assert trainer.scheduler.num_bad_epochs == bad_epochs
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    trainer.settings = trainer.settings.model_copy(update={"epochs": 3})
    history = fit(trainer)  # training goes on with the new optimizer
    assert len(history) == 3 and history["lr"].iloc[-1] == pytest.approx(0.05)


def test_cosine_schedule_warms_up_then_decays_to_min_lr() -> None:
    trainer = make_trainer(
        epochs=6,
        lr=0.1,
        lr_scheduler={"name": "cosine", "warmup_epochs": 2, "min_lr": 0.001},
        restore_best=False,
    )
    history = fit(trainer)
    lrs = history["lr"].tolist()
    assert lrs[0] == pytest.approx(0.1 / 3) and lrs[1] == pytest.approx(0.2 / 3)
    assert lrs[2] == pytest.approx(0.1)
    assert lrs[2] > lrs[3] > lrs[4] > lrs[5] > 0.001


def test_time_budget_stops_training_early() -> None:
    trainer = make_trainer(epochs=50, time_budget_s=1e-6, early_stopping={"enabled": False})
    history = fit(trainer)
    assert len(history) == 1 and not trainer.stopped


@pytest.fixture
def denormals_kept() -> Iterator[None]:
    """The process's default (subnormal floats kept) before and after the test."""
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


@pytest.mark.usefixtures("denormals_kept")
@pytest.mark.parametrize(("setting", "flushed"), [("auto", True), (True, True), (False, False)])
def test_cpu_training_flushes_subnormal_floats_unless_told_not_to(setting: object, flushed: bool) -> None:
    subnormal = 1e-40  # float32's smallest normal is ~1.2e-38
    trainer = make_trainer(epochs=1, flush_denormal=setting)
    fit(trainer)
    assert (torch.tensor([subnormal]).item() == 0.0) is flushed


def test_channels_last_on_a_cpu_only_when_asked() -> None:
    cpu = torch.device("cpu")
    assert memory_format(cpu, "auto") == memory_format(cpu, False) == torch.contiguous_format
    assert memory_format(cpu, True) == torch.channels_last
    assert memory_format(torch.device("cuda"), "auto") == torch.channels_last
    for setting, expected in (("auto", torch.contiguous_format), (True, torch.channels_last)):
        assert make_trainer(channels_last=setting).memory_format == expected


def test_bf16_autocast_on_a_cpu_only_when_asked() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not autocasts(cpu, "auto") and autocasts(cpu, True) and not autocasts(cpu, False)
    assert autocasts(cuda, "auto") and not autocasts(cuda, False)
    for setting, expected in (("auto", torch.float32), (True, torch.bfloat16), (False, torch.float32)):
        trainer = make_trainer(epochs=1, amp=setting)
        seen: list[torch.dtype] = []
        trainer.model.backbone[1].register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.dtype))
        history = fit(trainer)
        assert set(seen) == {expected}, setting
        assert np.isfinite(history["val_loss"]).all()
    first, second = (fit(make_trainer(epochs=2, amp=True)) for _ in range(2))
    pd.testing.assert_frame_equal(first.drop(columns="epoch_time_s"), second.drop(columns="epoch_time_s"))
