"""The typed ``tuning`` parameters: the PBT search space, the population and the Ray connection.

Every default lives here; ``conf/base/parameters_tuning.yml`` keeps only what a user edits. The search space
is the reference study's: optimizer in {adam, sgd, rmsprop}, learning rate and weight decay on a log scale.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from alloy_mtl.config.base import ParamsModel
from alloy_mtl.mtl.optim.optimizers import OPTIMIZERS


class LogRange(ParamsModel):
    """A positive range sampled (and resampled by PBT) log-uniformly."""

    low: float = Field(gt=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LogRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range (ends included)."""
        return self.low <= value <= self.high

    @property
    def geometric_mean(self) -> float:
        """The middle of the range on a log scale."""
        return math.sqrt(self.low * self.high)


class TuningParams(ParamsModel):
    """Population Based Training of one architecture's optimizer, learning rate and weight decay.

    One PBT "step" is one training epoch: ``perturbation_interval`` epochs pass between exploit/explore
    decisions, and a trial trains at most ``max_epochs`` epochs or until ``time_budget_s`` is spent.
    """

    optimizers: list[str] = ["adam", "sgd", "rmsprop"]
    lr: LogRange = LogRange(low=1e-4, high=3e-2)
    weight_decay: LogRange = LogRange(low=1e-6, high=1e-2)
    population_size: int = Field(4, ge=2)
    max_epochs: int = Field(20, ge=1)
    perturbation_interval: int = Field(2, ge=1)
    quantile_fraction: float = Field(0.25, gt=0, le=0.5)
    resample_probability: float = Field(0.25, ge=0, le=1)
    perturbation_factors: tuple[float, float] = (1.2, 0.8)
    time_budget_s: float | None = Field(600.0, gt=0)
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    seed: int = 0
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    num_cpus: int | None = Field(None, ge=1)
    ray_address: str | None = None
    storage_dir: str = "data/06_models/pbt_runs"
    checkpoints_to_keep: int | None = Field(4, ge=3)
    """Checkpoints each member keeps on disk, newest first (None: all). PBT hands a weaker member the
    donor's newest checkpoint at the decision; Ray warns that 2 or fewer can be deleted before it is
    restored."""
    image_size: int | None = Field(None, ge=1)
    max_train_images: int | None = Field(None, ge=1)

    @field_validator("optimizers")
    @classmethod
    def _known_optimizers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one optimizer")
        names = [OPTIMIZERS.check(name.lower()) for name in value]
        if len(set(names)) != len(names):
            raise ValueError(f"optimizers repeat a name: {names}")
        return names

    @field_validator("perturbation_factors")
    @classmethod
    def _factors(cls, value: tuple[float, float]) -> tuple[float, float]:
        if any(f <= 0 for f in value):
            raise ValueError(f"factors must be positive, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _interval_fits(self) -> TuningParams:
        if self.perturbation_interval > self.max_epochs:
            raise ValueError(
                f"perturbation_interval ({self.perturbation_interval}) exceeds max_epochs ({self.max_epochs}): "
                "no trial would ever be exploited"
            )
        return self
