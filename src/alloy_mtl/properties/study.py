"""The study runner: every configuration x seed trained with the mtl core, evaluated on the test split.

Single-task configurations train one model per task on that task's labelled rows; multi-task ones train
one model on every row (missing labels masked by the losses). Every model gets the same number of
optimiser steps per epoch: a single-task loader draws, with replacement, as many samples per epoch as the
multi-task training set has rows, so a 100-label task is not starved of updates. A :class:`GradientProbe`
measures, after every epoch, the angle between the task gradients on the shared parameters over the whole
training set (independent of which labels a batch happened to hold).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, f1_score, r2_score, recall_score
from torch import Tensor

from alloy_mtl.mtl.device import seed_everything
from alloy_mtl.mtl.gradients.base import cosine_from_gramian, gramian, task_gradients, task_pairs
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, fit_target_stats
from alloy_mtl.mtl.losses.task_losses import build_task_losses
from alloy_mtl.mtl.tasks import TaskSpec
from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.mtl.training.predict import predict
from alloy_mtl.mtl.training.trainer import Trainer
from alloy_mtl.properties.models import RelationMultiTaskModel, build_tabular_model
from alloy_mtl.properties.params import Configuration, StudyParams
from alloy_mtl.properties.split import SPLIT_COLUMN

logger = logging.getLogger(__name__)

FEATURE_PREFIXES = ("mean_", "spread_", "n_components", "max_fraction")
EVAL_BATCH = 4096


@dataclass(frozen=True)
class StudyData:
    """Model input as arrays: standardised features (N, F, 1, 1), encoded targets, split labels."""

    features: np.ndarray
    targets: dict[str, np.ndarray]
    split: np.ndarray
    feature_names: tuple[str, ...]

    def rows(self, split: str, tasks: Sequence[TaskSpec]) -> np.ndarray:
        """Indices of ``split`` rows that carry a label of at least one of ``tasks``."""
        labelled = np.zeros(len(self.split), dtype=bool)
        for task in tasks:
            target = self.targets[task.name]
            labelled |= target >= 0 if task.is_classification else np.isfinite(target)
        return np.flatnonzero((self.split == split) & labelled)


@dataclass(frozen=True)
class StudyResult:
    """Test metrics per run, per-epoch training records, and the learned relation weights."""

    runs: pd.DataFrame
    histories: pd.DataFrame
    relations: pd.DataFrame


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The descriptor columns of a model-input table."""
    return [c for c in frame.columns if c.startswith(FEATURE_PREFIXES)]


def prepare_data(model_input: pd.DataFrame, tasks: Sequence[TaskSpec]) -> StudyData:
    """Standardise the features with the train split's statistics and encode every task's target."""
    names = feature_columns(model_input)
    values = model_input[names].to_numpy(dtype=np.float64)
    split = model_input[SPLIT_COLUMN].astype(str).to_numpy()
    train = values[split == "train"]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    features = ((values - mean) / std).astype(np.float32)[:, :, None, None]
    targets = {}
    for task in tasks:
        column = model_input[task.target]
        if task.is_classification:
            column = column.astype("Int64").astype("string")
        targets[task.name] = task.encode(column)
    return StudyData(features, targets, split, tuple(names))


class GradientProbe(Callback):
    """Angle between the task gradients on the shared parameters over a fixed set, before and after each epoch.

    Uses the trainer's own losses and the mtl gradient helpers; the model runs in eval mode (no dropout), so
    the probe draws no random numbers and leaves training unchanged.
    """

    def __init__(self, features: Tensor, targets: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> None:
        self.features = features
        self.targets = dict(targets)
        self.masks = dict(masks)
        self.records: list[dict[str, float]] = []

    def measure(self, trainer: Trainer, epoch: int) -> None:
        """Record ``cos_<a>__<b>`` and ``angle_<a>__<b>`` (degrees) for this epoch."""
        model = trainer.model
        was_training = model.training
        model.eval()
        with torch.enable_grad():
            outputs = model.forward_heads(model.encode(self.features))
            losses = [
                trainer.task_losses[t](outputs[t], self.targets[t], self.masks[t]) for t in trainer.task_names
            ]
            per_task = [task_gradients(loss, trainer.shared_params) for loss in losses]
        cosine = cosine_from_gramian(gramian(per_task)).detach().cpu()
        model.train(was_training)
        record: dict[str, float] = {"epoch": float(epoch)}
        for key, (i, j) in task_pairs(trainer.task_names).items():
            value = float(cosine[i, j])
            record[f"cos_{key}"] = value
            record[f"angle_{key}"] = math.degrees(math.acos(max(-1.0, min(1.0, value))))
        self.records.append(record)

    def on_train_begin(self, trainer: Trainer) -> None:
        """Measure the untrained model (epoch 0)."""
        self.measure(trainer, 0)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Measure after the epoch."""
        self.measure(trainer, epoch)


def task_metrics(task: TaskSpec, outputs: Mapping[str, np.ndarray]) -> dict[str, float]:
    """R2 (regression) or F1, recall and AP of the positive (last) class (classification) on labelled rows."""
    target, mask = outputs[f"{task.name}_target"], outputs[f"{task.name}_mask"].astype(bool)
    if not task.is_classification:
        return {"r2": float(r2_score(target[mask], outputs[f"{task.name}_pred"][mask]))}
    truth = target[mask].astype(int)
    positive = task.num_outputs - 1
    pred = outputs[f"{task.name}_pred"][mask]
    score = outputs[f"{task.name}_probs"][mask][:, positive]
    return {
        "f1": float(f1_score(truth, pred, pos_label=positive, zero_division=0)),
        "recall": float(recall_score(truth, pred, pos_label=positive, zero_division=0)),
        "ap": float(average_precision_score(truth == positive, score)),
    }


class TensorBatches:
    """Mini-batches ``(features, {task: target}, {task: mask})`` sliced from an :class:`ArrayTaskDataset`'s arrays.

    The trainer and ``predict`` only iterate a loader; slicing whole batches out of the dataset's (already
    standardised and masked) arrays skips the per-item collation of a ``DataLoader``, which costs more than
    the tabular model's own step. ``generator`` (seeded) draws the order; with ``samples_per_epoch`` an epoch
    draws that many rows with replacement.
    """

    def __init__(
        self,
        dataset: ArrayTaskDataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        samples_per_epoch: int | None = None,
    ) -> None:
        rows = dataset.indices
        self.features = torch.from_numpy(np.ascontiguousarray(dataset.images[rows]))
        self.targets = {t: torch.from_numpy(v[rows]) for t, v in dataset.targets.items()}
        self.masks = {t: torch.from_numpy(m[rows]) for t, m in dataset.masks.items()}
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.samples_per_epoch = samples_per_epoch
        self.generator = torch.Generator().manual_seed(int(seed))
        self.sampler = None  # what the trainer's loader_generators looks at besides ``generator``
        self.batch_sampler = None

    @property
    def num_samples(self) -> int:
        """Rows drawn per epoch."""
        return self.samples_per_epoch if self.samples_per_epoch is not None else len(self.features)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]]:
        n = len(self.features)
        if self.samples_per_epoch is not None:
            order = torch.randint(n, (self.samples_per_epoch,), generator=self.generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            yield (
                self.features[rows],
                {t: v[rows] for t, v in self.targets.items()},
                {t: m[rows] for t, m in self.masks.items()},
            )


def _dataset(
    data: StudyData, tasks: Sequence[TaskSpec], rows: np.ndarray, stats: Mapping
) -> ArrayTaskDataset:
    targets = {t.name: data.targets[t.name] for t in tasks}
    return ArrayTaskDataset(data.features, targets, rows, target_stats=stats)


def train_and_test(  # noqa: PLR0917 (one run: configuration, tasks, data, study, seed, step budget)
    configuration: Configuration,
    tasks: Sequence[TaskSpec],
    data: StudyData,
    study: StudyParams,
    seed: int,
    samples_per_epoch: int | None = None,
) -> tuple[dict[str, dict[str, float]], pd.DataFrame, np.ndarray | None]:
    """Train one model on ``tasks`` and evaluate it on the test split.

    Returns:
        Test metrics per task, the per-epoch history (trainer metrics joined with the gradient probe), and the
        learned relation matrix (structured model) or None.
    """
    train_rows, val_rows, test_rows = (data.rows(s, tasks) for s in ("train", "val", "test"))
    stats = fit_target_stats({t.name: data.targets[t.name] for t in tasks}, train_rows)
    seed_everything(seed)
    options = study.model
    model = build_tabular_model(
        configuration.kind,
        tasks,
        data.features.shape[1],
        options.hidden,
        options.activation,
        options.dropout,
        options.head_hidden,
        options.head_dropout,
        options.relation_init,
    )
    model.target_scaler.set_stats(stats)
    train_set = _dataset(data, tasks, train_rows, stats)
    train_labels = {t: v[train_rows] for t, v in train_set.targets.items()}
    losses = build_task_losses(tasks, train_labels)
    oversample = samples_per_epoch is not None and samples_per_epoch > len(train_rows)
    train_loader = TensorBatches(
        train_set,
        study.batch_size,
        shuffle=True,
        seed=seed,
        samples_per_epoch=samples_per_epoch if oversample else None,
    )
    val_loader = TensorBatches(_dataset(data, tasks, val_rows, stats), EVAL_BATCH)
    test_loader = TensorBatches(_dataset(data, tasks, test_rows, stats), EVAL_BATCH)
    settings = study.training.model_copy(
        update={"seed": seed, "gradient_method": configuration.gradient_method}
    )
    probe = None
    if len(tasks) > 1:
        probe = GradientProbe(train_loader.features, train_loader.targets, train_loader.masks)
    trainer = Trainer(model, tasks, losses, settings, callbacks=[probe] if probe else [])
    history = trainer.fit(train_loader, val_loader)
    outputs = predict(model, test_loader, tasks, device="cpu", amp=False)
    metrics = {t.name: task_metrics(t, outputs) for t in tasks}
    if probe is not None:
        history = pd.DataFrame(probe.records).merge(history, on="epoch", how="left")
    relation = model.relation_matrix().numpy() if isinstance(model, RelationMultiTaskModel) else None
    return metrics, history, relation


def run_study(model_input: pd.DataFrame, study: StudyParams) -> StudyResult:
    """Every configuration of ``study`` for every seed.

    Returns:
        ``runs``: one row per (configuration, seed, task, metric) with the test value and the training time;
        ``histories``: per (configuration, seed, task group, epoch) the trainer's metrics and the probe's
        gradient angles; ``relations``: the structured models' learned R per seed.
    """
    if study.torch_threads is not None:
        torch.set_num_threads(study.torch_threads)
    runs: list[dict[str, object]] = []
    histories: list[pd.DataFrame] = []
    relations: list[dict[str, object]] = []
    for seed in study.seed_list:
        for name, configuration in study.configurations.items():
            tasks = study.task_specs(configuration.lds)
            data = prepare_data(model_input, tasks)
            groups = [[t] for t in tasks] if configuration.kind == "single_task" else [list(tasks)]
            budget = len(data.rows("train", tasks))
            for group in groups:
                start = time.perf_counter()
                metrics, history, relation = train_and_test(configuration, group, data, study, seed, budget)
                seconds = time.perf_counter() - start
                label = "+".join(t.name for t in group)
                logger.info("%s seed %d [%s]: %s (%.1f s)", name, seed, label, metrics, seconds)
                for task, values in metrics.items():
                    for metric, value in values.items():
                        runs.append(
                            {"configuration": name, "seed": seed, "task": task, "metric": metric,
                             "value": value, "seconds": seconds}
                        )  # fmt: skip
                histories.append(history.assign(configuration=name, seed=seed, tasks=label))
                if relation is not None:
                    names = [t.name for t in group]
                    relations += [
                        {"configuration": name, "seed": seed, "task": names[i], "source": names[j],
                         "weight": float(relation[i, j])}
                        for i in range(len(names))
                        for j in range(len(names))
                    ]  # fmt: skip
    history_frame = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    leading = ["configuration", "seed", "tasks", "epoch"]
    history_frame = history_frame[leading + [c for c in history_frame.columns if c not in leading]]
    return StudyResult(pd.DataFrame(runs), history_frame, pd.DataFrame(relations))
