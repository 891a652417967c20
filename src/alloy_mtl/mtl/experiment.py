"""One training run from plain parameters: data -> loaders -> model -> trainer -> test predictions.

This is the whole recipe that a Kedro node, a benchmark or a notebook calls; it knows nothing of Kedro.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from alloy_mtl.constants import ALLOYS
from alloy_mtl.mtl.callbacks import Callback, LoggingCallback
from alloy_mtl.mtl.checkpoint import CheckpointMismatchError
from alloy_mtl.mtl.input_transform import InputNormalizer
from alloy_mtl.mtl.losses import build_task_losses
from alloy_mtl.mtl.model import build_model
from alloy_mtl.mtl.sampler import class_balanced_sampler
from alloy_mtl.mtl.tasks import TaskSpec, parse_tasks
from alloy_mtl.mtl.torch_data import ArrayTaskDataset, default_mask, fit_target_stats, make_dataloader
from alloy_mtl.mtl.trainer import Trainer, predict, seed_everything

logger = logging.getLogger(__name__)

RESUME_MODES = ("auto", True, False)


@dataclass
class TrainingResult:
    """What one training run hands back."""

    bundle: dict[str, Any]
    """Best weights plus everything needed to rebuild the model (see :func:`load_model`)."""
    history: pd.DataFrame
    """One row per epoch (losses, accuracies, task weights, gradient diagnostics)."""
    predictions: pd.DataFrame
    """Test-split predictions in the evaluation contract (``alloy_true``, ``prob_<alloy>``, ...)."""
    summary: dict[str, Any]
    """Parameter count, device, wall time, epochs trained."""


def enabled_tasks(task_params: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The task specs whose ``enabled`` flag is not false, without the flag (a config can switch tasks off)."""
    active = {
        name: {k: v for k, v in spec.items() if k != "enabled"}
        for name, spec in task_params.items()
        if spec.get("enabled", True)
    }
    if not active:
        raise ValueError("training.tasks: every task is disabled; enable at least one")
    return active


def task_targets(metadata: pd.DataFrame, tasks: Sequence[TaskSpec]) -> dict[str, np.ndarray]:
    """Per-task target arrays from the metadata: class indices (-1 = missing) or floats (NaN = missing).

    Raises:
        ValueError: a task's target column is absent, or a class label is not an alloy, naming both.
    """
    targets: dict[str, np.ndarray] = {}
    for task in tasks:
        if task.target not in metadata.columns:
            raise ValueError(
                f"task '{task.name}': target column '{task.target}' is not in the metadata "
                f"(columns: {list(metadata.columns)})"
            )
        column = metadata[task.target]
        if task.is_classification:
            labels = column.astype("string")
            index = {alloy: i for i, alloy in enumerate(ALLOYS)}
            unknown = sorted(set(labels.dropna()) - set(index))
            if unknown:
                raise ValueError(f"task '{task.name}': labels {unknown} are not alloys {list(ALLOYS)}")
            targets[task.name] = labels.map(index).fillna(-1).astype(np.int64).to_numpy()
        else:
            targets[task.name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return targets


def split_indices(metadata: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row indices of the train, val and test splits (from the ``split`` column)."""
    if "split" not in metadata.columns:
        raise ValueError("model input metadata has no 'split' column; run the data_processing pipeline")
    split = metadata["split"].to_numpy()
    indices = {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    empty = [name for name, rows in indices.items() if rows.size == 0]
    if empty:
        raise ValueError(f"model input has no rows in split(s) {empty}")
    return indices


def _subsample(rows: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or rows.size <= limit:
        return rows
    chosen = np.random.default_rng(seed).choice(rows, size=int(limit), replace=False)
    return np.sort(chosen)


def run_identity(params: Mapping[str, Any], metadata: pd.DataFrame, train_rows: np.ndarray) -> dict[str, str]:
    """What a checkpoint must share with this run to be resumed: the data and every setting but ``epochs``."""
    settings = {
        k: v for k, v in params.items() if k not in {"epochs", "resume", "progress_bar", "num_workers"}
    }
    data = metadata[["image_id", "split"]].to_numpy().astype(str).tolist()
    return {
        "settings": hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ],
        "data": hashlib.sha256(json.dumps([data, train_rows.tolist()]).encode()).hexdigest()[:16],
    }


def _trainer_config(
    params: Mapping[str, Any], checkpoint_dir: Path | None, resume: bool, identity: Mapping[str, str]
) -> dict[str, Any]:
    monitor = params.get("monitor", {})
    scheduler = params.get("lr_scheduler", {})
    stopping = params.get("early_stopping", {})
    method = dict(params.get("gradient_method", {"name": "equal"}))
    return {
        "epochs": int(params["epochs"]),
        "optimizer": params["optimizer"],
        "lr": float(params["lr"]),
        "weight_decay": float(params.get("weight_decay", 0.0)),
        "momentum": float(params.get("momentum", 0.9)),
        "gradient_method": method.pop("name", "equal"),
        "gradient_params": method,
        "monitor": monitor.get("metric", "val_loss"),
        "monitor_mode": monitor.get("mode", "min"),
        "lr_patience": int(scheduler.get("patience", 3)),
        "lr_factor": float(scheduler.get("factor", 0.1)),
        "early_stopping": bool(stopping.get("enabled", True)),
        "early_stopping_patience": int(stopping.get("patience", 10)),
        "min_epochs": int(stopping.get("min_epochs", 15)),
        "checkpoint_dir": None if checkpoint_dir is None else str(checkpoint_dir),
        "resume": resume,
        "device": params.get("device", "auto"),
        "seed": int(params.get("seed", 0)),
        "amp": bool(params.get("amp", True)),
        "channels_last": bool(params.get("channels_last", True)),
        "progress": _progress_flag(params.get("progress_bar", "auto")),
        "run_identity": dict(identity),
        "grad_clip_norm": params.get("grad_clip_norm"),
    }


def _progress_flag(value: Any) -> bool | None:
    """``auto`` shows the per-epoch progress bar only on a terminal (not in CI or cluster logs)."""
    if value == "auto" or value is None:
        return None
    if isinstance(value, bool):
        return value
    raise ValueError(f"parameters training.progress_bar: got {value!r}, expected auto, true or false")


def _set_aside_checkpoints(checkpoint_dir: Path) -> Path:
    """Move an incompatible checkpoint folder aside (never delete what a user had)."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    target = checkpoint_dir.with_name(f"{checkpoint_dir.name}.stale-{stamp}")
    shutil.move(str(checkpoint_dir), str(target))
    return target


def train_from_params(
    images: np.ndarray,
    metadata: pd.DataFrame,
    params: Mapping[str, Any],
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainingResult:
    """Train one multi-task model on the train split, select on val, predict the test split.

    Args:
        images: (N, C, H, W) array, possibly a read-only memory map.
        metadata: one row per image with the contract columns and ``split``.
        params: the merged training parameters (``conf/base/parameters_training.yml``: ``training`` deep-merged
            with the architecture's ``train_options``).
        checkpoint_dir: where ``last.pt``/``best.pt`` go; None trains without checkpoints.
        callbacks: per-epoch callbacks (tracking plugs in here).

    Returns:
        The bundle, history, test predictions and a summary.
    """
    resume = params.get("resume", "auto")
    if resume not in RESUME_MODES:
        raise ValueError(f"parameters training.resume: got {resume!r}, expected auto, true or false")
    seed = int(params.get("seed", 0))
    seed_everything(seed)
    task_params = enabled_tasks(params["tasks"])
    tasks = parse_tasks(task_params)
    targets = task_targets(metadata, tasks)
    rows = split_indices(metadata)
    train_rows = _subsample(rows["train"], params.get("max_train_images"), seed)
    for task in tasks:
        if not default_mask(targets[task.name][train_rows]).any():
            raise ValueError(
                f"task '{task.name}': no training image has a '{task.target}' label; set "
                f"training.tasks.{task.name}.enabled: false for this dataset (class-per-folder data has no "
                "thickness or absorption)"
            )
    target_stats = fit_target_stats(targets, train_rows)
    train_targets = {
        name: (values[train_rows] - target_stats[name][0]) / target_stats[name][1]
        if name in target_stats
        else values[train_rows]
        for name, values in targets.items()
    }
    image_size = params.get("image_size") or images.shape[-1]
    datasets = {
        name: ArrayTaskDataset(
            images,
            targets,
            split_rows,
            target_stats=target_stats,
            image_size=None if image_size == images.shape[-1] else image_size,
        )
        for name, split_rows in (("train", train_rows), ("val", rows["val"]), ("test", rows["test"]))
    }
    sampler = None
    classification = [t for t in tasks if t.is_classification]
    if params.get("class_balanced_sampler") and classification:
        generator = torch.Generator().manual_seed(seed)
        sampler = class_balanced_sampler(train_targets[classification[0].name], generator=generator)
    loader_args = {"batch_size": int(params["batch_size"]), "num_workers": int(params.get("num_workers", 0))}
    loaders = {
        "train": make_dataloader(datasets["train"], shuffle=True, seed=seed, sampler=sampler, **loader_args),
        "val": make_dataloader(datasets["val"], seed=seed, **loader_args),
        "test": make_dataloader(datasets["test"], seed=seed, **loader_args),
    }
    model_options = dict(params.get("model_options") or {})
    model_options.setdefault("input_transform", params.get("input_transform", "neg_log"))
    model = build_model(
        params["arch"],
        in_chans=images.shape[1],
        image_size=int(image_size),
        tasks=tasks,
        activation=params.get("activation"),
        pretrained=bool(params.get("pretrained", False)),
        fds_train_targets=train_targets,
        **model_options,
    )
    if isinstance(model.normalizer, InputNormalizer):
        model.normalizer.fit(images, train_rows)
    losses = build_task_losses(tasks, train_targets)
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)

    identity = run_identity(params, metadata, train_rows)
    log_keys = ("train_loss", "val_loss", *(f"val_{t.name}_acc" for t in classification), "lr")

    def make_trainer(resume_flag: bool) -> Trainer:
        config = _trainer_config(params, directory, resume_flag, identity)
        return Trainer(
            model,
            tasks,
            losses,
            config,
            target_stats=target_stats,
            callbacks=[LoggingCallback(log_keys), *callbacks],
        )

    start = time.perf_counter()
    trainer = make_trainer(resume is not False and directory is not None)
    try:
        history = trainer.fit(loaders["train"], loaders["val"])
    except CheckpointMismatchError:
        if resume is True or directory is None:
            raise
        # The fingerprint is checked before any state is loaded, so the model still holds its initial weights.
        moved = _set_aside_checkpoints(directory)
        logger.warning("checkpoints in %s came from another configuration; moved to %s", directory, moved)
        trainer = make_trainer(False)
        history = trainer.fit(loaders["train"], loaders["val"])
    wall = time.perf_counter() - start

    outputs = predict(
        trainer.model, loaders["test"], target_stats=trainer.target_stats, device=trainer.device
    )
    predictions = predictions_frame(outputs, metadata.iloc[rows["test"]], tasks)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    bundle = {
        "arch": params["arch"],
        "state_dict": {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
        "in_chans": int(images.shape[1]),
        "image_size": int(image_size),
        "activation": params.get("activation"),
        "model_options": model_options,
        "tasks": task_params,
        "target_stats": {k: [float(v[0]), float(v[1])] for k, v in trainer.target_stats.items()},
        "alloys": list(ALLOYS),
    }
    summary = {
        "arch": params["arch"],
        "n_params": int(n_params),
        "device": str(trainer.device),
        "epochs_trained": len(history),
        "wall_time_s": wall,
        "n_train_images": len(train_rows),
        "gradient_method": trainer.method.name,
    }
    logger.info("trained %s: %d epochs in %.1f s on %s", params["arch"], len(history), wall, trainer.device)
    return TrainingResult(bundle=bundle, history=history, predictions=predictions, summary=summary)


def predictions_frame(
    outputs: Mapping[str, np.ndarray], metadata: pd.DataFrame, tasks: Sequence[TaskSpec]
) -> pd.DataFrame:
    """Predictions in the evaluation contract: ``image_id``, ``<target>_true``/``_pred``, ``prob_<alloy>``."""
    frame = pd.DataFrame({"image_id": metadata["image_id"].to_numpy()})
    for task in tasks:
        if task.is_classification:
            frame[f"{task.target}_true"] = metadata[task.target].astype("string").to_numpy()
            frame[f"{task.target}_pred"] = np.asarray(ALLOYS)[outputs[f"{task.name}_pred"]]
            probs = outputs[f"{task.name}_probs"]
            for i, alloy in enumerate(ALLOYS):
                frame[f"prob_{alloy}"] = probs[:, i]
        else:
            frame[f"{task.target}_true"] = pd.to_numeric(metadata[task.target], errors="coerce").to_numpy()
            frame[f"{task.target}_pred"] = outputs[f"{task.name}_pred"]
    return frame


def load_model(bundle: Mapping[str, Any]) -> torch.nn.Module:
    """Rebuild the trained model from a bundle written by :func:`train_from_params` (eval mode)."""
    tasks = parse_tasks(bundle["tasks"])
    model = build_model(
        bundle["arch"],
        in_chans=int(bundle["in_chans"]),
        image_size=int(bundle["image_size"]),
        tasks=tasks,
        activation=bundle.get("activation"),
        pretrained=False,
        **dict(bundle.get("model_options") or {}),
    )
    model.load_state_dict(bundle["state_dict"])
    return model.eval()
