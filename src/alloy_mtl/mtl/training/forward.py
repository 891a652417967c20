"""One batch through a multi-task model as the trainer feeds it: the batch on the device, encode + heads as
one module (what a data-parallel strategy wraps), and the model's parameters split into shared and heads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alloy_mtl.mtl.device import to_device
from alloy_mtl.mtl.training.predict import split_batch


class EncodeAndHeads(nn.Module):
    """``forward`` = encode + heads, so a wrapper (DDP) sees the whole training forward of the mtl contract
    model; ``module(images, targets, epoch)`` returns ``(features, outputs)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: Tensor, targets: Mapping[str, Tensor] | None = None, epoch: int | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The shared features and each head's output."""
        features = self.model.encode(images)
        return features, self.model.forward_heads(features, targets=targets, epoch=epoch)


def training_batch(
    batch: Any, device: torch.device, memory_format: torch.memory_format
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """``(images, targets, masks)`` of ``batch`` on ``device``, images in ``memory_format``.

    Raises:
        ValueError: a batch without targets and masks.
    """
    images, targets, masks = split_batch(batch)
    if targets is None or masks is None:
        raise ValueError("Trainer: training batches must be (images, targets, masks)")
    images = to_device(images, device).to(memory_format=memory_format)
    return images, to_device(targets, device), to_device(masks, device)


def split_parameters(
    model: nn.Module, task_names: Sequence[str]
) -> tuple[list[Tensor], dict[str, list[Tensor]]]:
    """The trainable shared parameters and each task head's (``shared_parameters`` / ``task_parameters``).

    Raises:
        ValueError: trainable parameters that are neither shared nor in a head.
    """
    shared = [p for p in model.shared_parameters() if p.requires_grad]
    heads = {t: [p for p in model.task_parameters(t) if p.requires_grad] for t in task_names}
    covered = {id(p) for p in shared}
    for params in heads.values():
        covered.update(id(p) for p in params)
    orphans = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if orphans:
        raise ValueError(
            f"Trainer: parameters neither in shared_parameters() nor in a task head: {orphans[:5]}"
            f"{' ...' if len(orphans) > 5 else ''}"
        )
    return shared, heads
