"""Typed parameters of the evaluation pipelines (``conf/base/parameters_evaluation.yml``)."""

from __future__ import annotations

from pydantic import Field

from alloy_mtl.config.base import ParamsModel


class BootstrapParams(ParamsModel):
    """Specimen-level bootstrap of the headline metrics' intervals (0 resamples switches it off)."""

    n_resamples: int = Field(1000, ge=0)
    seed: int = 0
    level: float = Field(0.95, gt=0, lt=1)


class EvaluationSetParams(ParamsModel):
    """A large simulated evaluation set of fresh specimens, balanced across alloys (generated data only).

    The split's test set has a handful of tail specimens; this set is what ranks models. Its specimens come
    from a seed of their own, so none of them is in the training data.
    """

    enabled: bool = True
    n_images: int = Field(3000, ge=0)
    seed_offset: int = 1_000_003
    images_per_specimen: int = Field(3, ge=1)


class EvaluationParams(ParamsModel):
    """Tail classes, shot-bin thresholds and calibration bins of the per-model evaluation."""

    tail_classes: list[str] = ["7075", "2017"]
    shot_thresholds: dict[str, int] = {"many": 100, "few": 20}
    class_shot_thresholds: dict[str, int] = {"many": 100, "few": 20}
    shot_bins: int | list[float] | dict[str, int | list[float]] = 50
    ece_bins: int = Field(15, ge=1)
    ensemble_regression_tolerance: float | None = Field(2.0, gt=0)
    """The ensembles average a regression target over the models whose validation MAE is at most this multiple
    of the best model's (a failed regression head is left out); null averages every model."""
    bootstrap: BootstrapParams = BootstrapParams()
    evaluation_set: EvaluationSetParams = EvaluationSetParams()
