"""Prediction with a trained multi-task model: numpy arrays per task, regression in original units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from alloy_mtl.constants import CLASSIFICATION
from alloy_mtl.mtl.device import autocast, resolve_device, to_device
from alloy_mtl.mtl.training.meter import TaskLike


def split_batch(batch: Any) -> tuple[Tensor, dict[str, Tensor] | None, dict[str, Tensor] | None]:
    """``(images, targets, masks)`` of a batch that is a tensor or a tuple of up to three items."""
    if isinstance(batch, Tensor):
        return batch, None, None
    if isinstance(batch, (list, tuple)) and batch:
        targets = batch[1] if len(batch) > 1 else None
        masks = batch[2] if len(batch) > 2 else None
        return batch[0], targets, masks
    raise ValueError(f"batch: expected a tensor or (images, targets, masks), got {type(batch).__name__}")


def destandardize(model: nn.Module, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Regression outputs in original units, by the model's own ``target_scaler`` (identity without one)."""
    scaler = getattr(model, "target_scaler", None)
    return outputs if scaler is None else scaler.destandardize(outputs)


@torch.inference_mode()
def predict(
    model: nn.Module,
    loader: DataLoader,
    tasks: Sequence[TaskLike],
    device: str | torch.device | None = None,
    amp: bool | str = "auto",
) -> dict[str, np.ndarray]:
    """Run ``model`` over ``loader`` and collect numpy arrays, as each task's kind says.

    Classification: ``<task>_logits`` (divided by the model's calibrated temperature, ``calibration``),
    ``<task>_probs`` (softmax), ``<task>_pred`` (class index).
    Regression: ``<task>_pred`` in original units (the model's ``target_scaler`` undone). When batches carry
    targets and masks: ``<task>_target`` (original units; -1 / NaN where missing) and ``<task>_mask``.
    A model carrying a fitted unknown-material score (``ood``): ``ood_score`` per image.
    """
    device = next(model.parameters()).device if device is None else resolve_device(device)
    model.eval()
    chunks: dict[str, list[np.ndarray]] = {}

    def add(key: str, value: Tensor) -> None:
        chunks.setdefault(key, []).append(value.detach().cpu().numpy())

    density = getattr(model, "ood", None)
    scored = density is not None and density.fitted
    calibration = getattr(model, "calibration", None)
    for batch in loader:
        images, targets, masks = split_batch(batch)
        with autocast(device, amp):
            if scored:
                features = model.encode(to_device(images, device))
                raw = model.forward_heads(features)
                add("ood_score", density(features.float()))
            else:
                raw = model(to_device(images, device))
        logits = {k: v.float() for k, v in raw.items()}
        outputs = destandardize(model, logits if calibration is None else calibration(logits))
        truths = None if targets is None else destandardize(model, {k: v.float() for k, v in targets.items()})
        for task in tasks:
            output = outputs[task.name]
            if task.kind == CLASSIFICATION:
                add(f"{task.name}_logits", output)
                # float64: a float32 probability rounds to 1.0 beyond a logit gap of ~17, and the conformal
                # score 1 - p of the confident alloys would tie at 0
                add(f"{task.name}_probs", torch.softmax(output.double(), dim=1))
                add(f"{task.name}_pred", output.argmax(dim=1))
            else:
                add(f"{task.name}_pred", output.reshape(-1))
            if truths is not None and task.name in truths:
                target = targets[task.name] if task.kind == CLASSIFICATION else truths[task.name]
                add(f"{task.name}_target", target)
            if masks is not None and task.name in masks:
                add(f"{task.name}_mask", masks[task.name])
    return {key: np.concatenate(parts) for key, parts in chunks.items()}
