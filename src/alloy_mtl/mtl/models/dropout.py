"""Dropout that draws its masks from a generator of its own, not from torch's process-wide one.

Torch's default generator is shared by every thread of a process. Two models trained at once in one process
(Kedro's ``ThreadRunner``, ``alloy_mtl.runner.ModelParallelRunner``) would interleave their draws from it,
and a seeded run would no longer repeat itself. The trainer gives each model one generator
(:func:`attach_generator`), seeds it from ``training.seed`` and keeps its state in the checkpoints, so a run's
dropout masks depend on its seed alone, however many models train beside it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

DROPOUT_SEED_OFFSET = 104_729
"""Added to ``training.seed`` for the dropout generator, so its stream is not the one that drew the weights."""


def dropout_seed(seed: int) -> int:
    """The seed of a model's dropout generator for ``training.seed`` = ``seed``."""
    return int(seed) + DROPOUT_SEED_OFFSET


class SeededDropout(nn.Dropout):
    """:class:`torch.nn.Dropout` drawing from ``generator`` when one is attached (else as ``nn.Dropout``).

    The same masks distribution and scaling as ``nn.Dropout``: zero with probability ``p``, the survivors
    scaled by ``1 / (1 - p)``. The generator is not part of the module's state: a copy or a pickle of the
    module has none until one is attached.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__(p, inplace)
        self.generator: torch.Generator | None = None

    def forward(self, x: Tensor) -> Tensor:
        """Drop with the attached generator in training mode; the identity in eval mode."""
        if self.generator is None:
            return F.dropout(x, self.p, self.training, self.inplace)
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x.mul(0.0) if not self.inplace else x.mul_(0.0)
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        scaled = keep.div_(1.0 - self.p)
        return x.mul_(scaled) if self.inplace else x * scaled

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "generator": None}


def use_seeded_dropout(model: nn.Module) -> nn.Module:
    """Replace every plain :class:`torch.nn.Dropout` inside ``model`` by a :class:`SeededDropout` (in place).

    The modules hold no parameters or buffers, so the state dict is unchanged. Returns ``model``.
    """
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, SeededDropout(child.p, child.inplace))
    return model


def attach_generator(model: nn.Module, generator: torch.Generator | None) -> int:
    """Make every :class:`SeededDropout` of ``model`` draw from ``generator`` (None detaches it).

    Returns how many modules now draw from it.
    """
    modules = [m for m in model.modules() if isinstance(m, SeededDropout)]
    for module in modules:
        module.generator = generator
    return len(modules)
