"""Typed parameters of the evaluation pipelines (``conf/base/parameters_evaluation.yml``)."""

from __future__ import annotations

from pydantic import Field

from alloy_mtl.config.base import ParamsModel


class EvaluationParams(ParamsModel):
    """Tail classes, shot-bin thresholds and calibration bins of the per-model evaluation."""

    tail_classes: list[str] = ["7075", "2017"]
    shot_thresholds: dict[str, int] = {"many": 100, "few": 20}
    class_shot_thresholds: dict[str, int] = {"many": 100, "few": 20}
    shot_bins: int | list[float] | dict[str, int | list[float]] = 50
    ece_bins: int = Field(15, ge=1)
