"""The moving average of a model's weights that the trainer keeps when ``ema.enabled`` (timm's ``ModelEmaV3``)."""

from __future__ import annotations

from typing import Any

from timm.utils import ModelEmaV3
from torch import nn


def weight_average(model: nn.Module, settings: Any) -> ModelEmaV3 | None:
    """An exponential moving average of ``model``'s parameters and buffers, or None when ``settings`` (a
    :class:`~alloy_mtl.mtl.params.WeightAveraging`) is off; update it with ``update(model, step=s)`` after
    optimizer step ``s`` (counted from 1)."""
    if not settings.enabled:
        return None
    return ModelEmaV3(model, decay=settings.decay, use_warmup=True, warmup_power=settings.warmup_power)
