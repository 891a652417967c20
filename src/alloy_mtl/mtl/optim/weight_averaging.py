"""Weight and statistics averaging: the moving average of a model's weights that the trainer keeps when
``ema.enabled`` (timm's ``ModelEmaV3``), and BatchNorm statistics recomputed from training batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from timm.utils import ModelEmaV3
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def weight_average(model: nn.Module, settings: Any) -> ModelEmaV3 | None:
    """An exponential moving average of ``model``'s parameters and buffers, or None when ``settings`` (a
    :class:`~alloy_mtl.mtl.params.WeightAveraging`) is off; update it with ``update(model, step=s)`` after
    optimizer step ``s`` (counted from 1)."""
    if not settings.enabled:
        return None
    return ModelEmaV3(model, decay=settings.decay, use_warmup=True, warmup_power=settings.warmup_power)


@torch.no_grad()
def recompute_batchnorm_statistics(
    model: nn.Module, images: Iterable[Tensor], forward: Callable[[Tensor], Any], batches: int
) -> int:
    """Replace every BatchNorm layer's running statistics by the plain mean of those of up to ``batches``
    batches of ``images`` passed through ``forward`` (only the BatchNorm layers in training mode, so dropout
    and other layers draw nothing). Returns the number of batches used (0: no BatchNorm, nothing done)."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    was_training = model.training
    momenta = [m.momentum for m in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: the plain mean over the batches
        norm.train()
    used = 0
    try:
        for batch in images:
            if used == batches:
                break
            forward(batch)
            used += 1
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.train(was_training)
    return used
