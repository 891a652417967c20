"""Optimizers by name, and rebuilding one mid-run (Population Based Training changes kind, lr, weight decay).

Each entry takes ``groups`` (parameter groups, each with its own ``weight_decay``) and ``lr``; the other
parameters of its signature are what a configuration may set for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from alloy_mtl.config.registry import Registry

logger = logging.getLogger(__name__)

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer", supplied=("groups", "lr"))


@OPTIMIZERS.register("adam", cls=torch.optim.Adam)
def _adam(groups: list[dict[str, Any]], lr: float, fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=lr, fused=fused or None)


@OPTIMIZERS.register("adamw", cls=torch.optim.AdamW)
def _adamw(groups: list[dict[str, Any]], lr: float, fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


@OPTIMIZERS.register("sgd", cls=torch.optim.SGD)
def _sgd(
    groups: list[dict[str, Any]], lr: float, momentum: float = 0.9, fused: bool = False
) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=fused or None)


@OPTIMIZERS.register("rmsprop", cls=torch.optim.RMSprop)
def _rmsprop(groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(groups, lr=lr)


def build_optimizer(
    name: str,
    model_params: Iterable[nn.Parameter],
    extra_params: Sequence[nn.Parameter] = (),
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """Optimizer by name (see :data:`OPTIMIZERS`); ``extra_params`` (e.g. learned task weights) get no decay.

    ``momentum`` reaches the optimizers whose constructor takes it (sgd) and is ignored by the others.
    ``fused`` asks for torch's fused kernel where the optimizer has one (adam, adamw, sgd): one pass over all
    weights per step instead of a loop over the parameter tensors, several times faster on a CPU; the others
    ignore it.
    """
    key = OPTIMIZERS.check(name.lower())
    groups: list[dict[str, Any]] = [{"params": list(model_params), "weight_decay": weight_decay}]
    if extra_params:
        groups.append({"params": list(extra_params), "weight_decay": 0.0})
    wanted = {"momentum": momentum, "fused": fused}
    options = {k: v for k, v in wanted.items() if k in OPTIMIZERS.accepted(key)}
    return OPTIMIZERS.build(key, groups, lr, **options)


def rebuild_optimizer(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    fused: bool = False,
) -> torch.optim.Optimizer:
    """The optimizer for a new configuration over the same parameters.

    Same kind: the existing optimizer is kept (its moments too) with new lr, weight decay and momentum.
    Another kind: a fresh optimizer on the same parameter groups (the old state means nothing to it).
    Groups without weight decay (learned task weights) keep none.
    """
    key = OPTIMIZERS.check(name.lower())
    model_group, *extra_groups = optimizer.param_groups
    if type(optimizer) is OPTIMIZERS.info(key)["cls"]:
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = lr
            if "momentum" in OPTIMIZERS.accepted(key):
                group["momentum"] = momentum
        model_group["weight_decay"] = weight_decay
        return optimizer
    extra = [p for group in extra_groups for p in group["params"]]
    logger.info("optimizer changed from %s to %s: its state starts afresh", type(optimizer).__name__, key)
    return build_optimizer(
        key, model_group["params"], extra, lr=lr, weight_decay=weight_decay, momentum=momentum, fused=fused
    )
