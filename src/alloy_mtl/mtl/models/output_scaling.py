"""What a model does to its heads' outputs before it answers: the regression targets' standardisation undone,
the classification logits divided by their calibrated temperature; both held as buffers, so they travel in
the state dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


class TargetScaler(nn.Module):
    """Standardisation of the regression targets, held as buffers so a saved model predicts in original units.

    The heads learn ``(y - mean) / std``; :meth:`destandardize` maps their outputs back. Statistics are set
    from the training split (:meth:`set_stats`) or come with a loaded ``state_dict``.
    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.register_buffer("mean", torch.zeros(len(self.tasks), dtype=torch.float64))
        self.register_buffer("std", torch.ones(len(self.tasks), dtype=torch.float64))

    def set_stats(self, stats: Mapping[str, tuple[float, float]]) -> TargetScaler:
        """Set ``{task: (mean, std)}`` for every task of the scaler.

        Raises:
            ValueError: a task of the scaler has no statistics.
        """
        missing = [t for t in self.tasks if t not in stats]
        if missing:
            raise ValueError(f"TargetScaler: no statistics for task(s) {missing}")
        with torch.no_grad():
            for i, task in enumerate(self.tasks):
                self.mean[i], self.std[i] = float(stats[task][0]), float(stats[task][1])
        return self

    def stats(self) -> dict[str, tuple[float, float]]:
        """``{task: (mean, std)}``."""
        return {t: (float(self.mean[i]), float(self.std[i])) for i, t in enumerate(self.tasks)}

    def destandardize(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Regression outputs in original units; other outputs unchanged."""
        out = dict(outputs)
        for i, task in enumerate(self.tasks):
            if task in out:
                value = out[task]  # the statistics follow its device and dtype (CUDA outputs, CPU targets)
                out[task] = value * self.std[i].to(value) + self.mean[i].to(value)
        return out


class LogitTemperature(nn.Module):
    """Temperature scaling (Guo et al. 2017) of each classification head's logits: ``logits / T`` per task,
    ``T = 1`` until :meth:`set` (``alloy_mtl.mtl.training.calibration.fit_temperature``, on validation data).
    It changes no decision (the arg-max stays), only how sure the probabilities say the model is; it is applied
    where the model answers (:meth:`MultiTaskModel.predict`, ``training.predict``), never in training."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.register_buffer("temperature", torch.ones(len(self.tasks), dtype=torch.float64))

    def set(self, temperatures: Mapping[str, float]) -> LogitTemperature:
        """Set ``{task: T}`` (T > 0) for tasks of this model; others keep theirs."""
        with torch.no_grad():
            for task, value in temperatures.items():
                if not value > 0:
                    raise ValueError(f"temperature of {task!r}: expected > 0, got {value}")
                self.temperature[self.tasks.index(task)] = float(value)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001 (torch's hook)
        # models and checkpoints from before calibration hold no temperature: they answer at T = 1
        state_dict.setdefault(f"{prefix}temperature", torch.ones_like(self.temperature))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def temperatures(self) -> dict[str, float]:
        """``{task: T}``."""
        return {t: float(self.temperature[i]) for i, t in enumerate(self.tasks)}

    def forward(self, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Classification logits divided by their temperature; other outputs unchanged."""
        out = dict(outputs)
        for i, task in enumerate(self.tasks):
            if task in out:
                out[task] = out[task] / self.temperature[i].to(out[task])
        return out
