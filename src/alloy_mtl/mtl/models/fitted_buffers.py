"""Base of the modules fitted after training (unknown-material score, conformal sets): buffers only."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FittedAfterTraining"]


class FittedAfterTraining(nn.Module):
    """A module of buffers set after training: a bundle saved before the module existed lacks them, and loads
    them as zeros (subclasses read zeros as "not fitted")."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001 (torch's hook)
        for name, buffer in self.named_buffers(recurse=False):
            state_dict.setdefault(prefix + name, torch.zeros_like(buffer))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
