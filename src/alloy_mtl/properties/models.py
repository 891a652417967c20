"""Tabular models honouring the mtl trainer's contract (encode / forward_heads / shared_parameters /
task_parameters): an MLP backbone for hard sharing and a structured model with a learned task-relation matrix.

Feature vectors travel through :class:`~alloy_mtl.mtl.loading.datasets.ArrayTaskDataset` as (N, F, 1, 1) arrays
(an F-channel 1x1 "image"); the backbones flatten them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from alloy_mtl.mtl.models.backbones import make_activation
from alloy_mtl.mtl.models.multitask import MultiTaskModel
from alloy_mtl.mtl.tasks import TaskSpec


class TabularMLP(nn.Module):
    """Linear -> activation -> dropout blocks on flattened feature vectors; ``num_features`` = last width."""

    def __init__(
        self, in_features: int, hidden: Sequence[int], activation: str = "relu", dropout: float = 0.1
    ):
        super().__init__()
        if not hidden:
            raise ValueError("TabularMLP: expected at least one hidden layer width")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), make_activation(activation), nn.Dropout(dropout)]
            width = size
        self.layers = nn.Sequential(*layers)
        self.num_features = width

    def forward(self, x: Tensor) -> Tensor:
        """(B, F, ...) -> (B, num_features)."""
        return self.layers(x.flatten(1))


class TaskTowers(nn.Module):
    """One :class:`TabularMLP` per task; the features are the towers' outputs side by side (B, T * H)."""

    def __init__(
        self, tasks: Sequence[str], in_features: int, hidden: Sequence[int], activation: str, dropout: float
    ):
        super().__init__()
        self.towers = nn.ModuleDict({t: TabularMLP(in_features, hidden, activation, dropout) for t in tasks})
        self.width = next(iter(self.towers.values())).num_features

    def forward(self, x: Tensor) -> Tensor:
        """Concatenated tower outputs."""
        return torch.cat([tower(x) for tower in self.towers.values()], dim=1)


class RelationMultiTaskModel(MultiTaskModel):
    """Structured MTL: per-task towers mixed by a learned task-relation matrix R before the heads.

    Head ``t`` sees ``z_t = sum_s R[t, s] h_s`` (``h_s``: tower ``s``'s output), a cross-stitch-style unit
    (Misra et al. 2016) over whole towers. R starts at 1 on the diagonal and ``relation_init`` elsewhere;
    row ``t`` belongs to task ``t``'s parameters (only its loss moves it), the towers are shared.
    """

    def __init__(  # noqa: PLR0917 (mirrors MultiTaskModel's signature)
        self,
        towers: TaskTowers,
        tasks: Sequence[TaskSpec],
        activation: str,
        hidden: int = 64,
        dropout: float = 0.1,
        relation_init: float = 0.1,
    ) -> None:
        super().__init__(towers, towers.width, tasks, activation, hidden, dropout)
        names = self.task_names
        if list(towers.towers) != names:
            raise ValueError(
                f"RelationMultiTaskModel: towers {list(towers.towers)} differ from tasks {names}"
            )
        self.relation = nn.ParameterDict(
            {
                t: nn.Parameter(torch.tensor([1.0 if s == t else float(relation_init) for s in names]))
                for t in names
            }
        )

    def relation_matrix(self) -> Tensor:
        """(T, T) R, rows = receiving task, columns = source tower, in task order (detached)."""
        return torch.stack([self.relation[t].detach() for t in self.task_names]).cpu()

    def forward_heads(
        self,
        features: Tensor,
        targets: Mapping[str, Tensor] | None = None,
        epoch: int | None = None,
        masks: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Mix the towers' features with R, then apply each head."""
        blocks = torch.stack(features.split(self.num_features, dim=1), dim=1)  # (B, T, H)
        out: dict[str, Tensor] = {}
        for name, head in self.heads.items():
            mixed = torch.einsum("s,bsh->bh", self.relation[name], blocks)
            y = head(mixed)
            out[name] = y.squeeze(-1) if name in self._regression else y
        return out

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """The head's parameters and task ``task``'s row of R."""
        return [*super().task_parameters(task), self.relation[task]]


def build_tabular_model(  # noqa: PLR0917 (one argument per architecture choice)
    kind: str,
    tasks: Sequence[TaskSpec],
    in_features: int,
    hidden: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.1,
    head_hidden: int = 64,
    head_dropout: float = 0.1,
    relation_init: float = 0.1,
) -> MultiTaskModel:
    """``structured`` gives a :class:`RelationMultiTaskModel`; anything else hard sharing on one MLP."""
    if kind == "structured":
        towers = TaskTowers([t.name for t in tasks], in_features, hidden, activation, dropout)
        return RelationMultiTaskModel(towers, tasks, activation, head_hidden, head_dropout, relation_init)
    backbone = TabularMLP(in_features, hidden, activation, dropout)
    return MultiTaskModel(backbone, backbone.num_features, tasks, activation, head_hidden, head_dropout)
