"""Typed parameters of the alloy-property study (``conf/base/parameters_alloy_properties.yml``).

Every default lives here; the YAML holds only what differs. The section is parsed once per node with
:func:`parse_study_params`; unknown keys and bad values are named by their YAML path
(``alloy_properties.study.seedz: unknown key; did you mean seeds?``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from alloy_mtl.config.base import ParamsModel, parse_params
from alloy_mtl.mtl.models.backbones import canonical_activation
from alloy_mtl.mtl.tasks import TaskSpec, parse_tasks
from alloy_mtl.mtl.trainer_settings import EarlyStopping, GradientMethodParams, LRScheduler, TrainerSettings
from alloy_mtl.properties.generator import NoiseLevels

SECTION = "alloy_properties"


class NoiseParams(ParamsModel):
    """Measurement noise of the generated data (lognormal sigma of the regressions, logit noise of the label)."""

    resistivity: float = Field(0.03, ge=0)
    hardness: float = Field(0.05, ge=0)
    amorphous_logit: float = Field(1.0, ge=0)

    def levels(self) -> NoiseLevels:
        """As the generator's dataclass."""
        return NoiseLevels(**self.model_dump())


class DataParams(ParamsModel):
    """Where the alloys come from: generated (sizes with the study's 65:1 imbalance) or a user's CSV."""

    source: Literal["generated", "csv"] = "generated"
    path: str | None = None
    unit: Literal["at%", "wt%"] = "at%"
    total_tolerance: float = Field(1.0, gt=0)
    n_resistivity: int = Field(13100, ge=0)
    n_hardness: int = Field(200, ge=0)
    n_amorphous: int = Field(210, ge=0)
    overlap: int = Field(3, ge=0)
    noise: NoiseParams = NoiseParams()
    seed: int = 0

    @model_validator(mode="after")
    def _path_for_csv(self) -> DataParams:
        if self.source == "csv" and not self.path:
            raise ValueError("path: required when source is 'csv'")
        if self.overlap > self.n_resistivity:
            raise ValueError(f"overlap: {self.overlap} exceeds n_resistivity {self.n_resistivity}")
        return self


class SplitParams(ParamsModel):
    """Random split stratified by label set, so every task keeps the fractions."""

    fractions: dict[Literal["train", "val", "test"], float] = {"train": 0.7, "val": 0.15, "test": 0.15}
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self) -> SplitParams:
        if set(self.fractions) != {"train", "val", "test"} or any(v <= 0 for v in self.fractions.values()):
            raise ValueError("fractions: expected positive train, val and test fractions")
        if abs(sum(self.fractions.values()) - 1.0) > 1e-6:
            raise ValueError(f"fractions: must sum to 1, got {sum(self.fractions.values())}")
        return self


class ModelParams(ParamsModel):
    """Tabular MLP backbone (hard sharing; one tower per task in the structured model) and the heads."""

    hidden: tuple[int, ...] = (128, 128)
    dropout: float = Field(0.1, ge=0, lt=1)
    head_hidden: int = Field(64, ge=1)
    head_dropout: float = Field(0.1, ge=0, lt=1)
    activation: str = "relu"
    relation_init: float = Field(0.1, description="initial off-diagonal task-relation weight (structured)")

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value: str) -> str:
        return canonical_activation(value)


class StudyTrainerSettings(TrainerSettings):
    """The trainer's settings with the study's defaults (CPU, no AMP, no progress bar, short patience)."""

    epochs: int = Field(30, ge=1)
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    progress_bar: Literal["auto"] | bool = False
    grad_clip_norm: float | None = Field(5.0, gt=0)
    lr_scheduler: LRScheduler = LRScheduler(patience=4, factor=0.3)
    early_stopping: EarlyStopping = EarlyStopping(patience=8, min_epochs=10)
    gradient_method: GradientMethodParams = GradientMethodParams(diagnostics_every=5)


class Configuration(ParamsModel):
    """One arm of the study: single-task models, hard sharing, or the structured model, with a gradient method."""

    kind: Literal["single_task", "hard_sharing", "structured"] = "hard_sharing"
    gradient_method: GradientMethodParams = GradientMethodParams(diagnostics_every=5)
    lds: bool = False

    @model_validator(mode="after")
    def _single_task_is_plain(self) -> Configuration:
        if self.kind == "single_task" and self.gradient_method.name != "equal":
            raise ValueError("gradient_method: a single-task model has one loss; use 'equal'")
        return self


DEFAULT_TASKS: dict[str, dict[str, Any]] = {
    "resistivity": {"kind": "regression", "target": "resistivity", "loss": "mse"},
    "hardness": {"kind": "regression", "target": "hardness", "loss": "mse"},
    "amorphous": {
        "kind": "classification",
        "target": "amorphous",
        "classes": ["0", "1"],
        "loss": "cross_entropy",
    },
}

DEFAULT_CONFIGURATIONS: dict[str, Configuration] = {
    "single_task": Configuration(kind="single_task"),
    "mtl_equal": Configuration(),
    "mtl_structured": Configuration(kind="structured"),
    "mtl_pcgrad": Configuration(gradient_method=GradientMethodParams(name="pcgrad")),
    "mtl_lds_gradnorm": Configuration(gradient_method=GradientMethodParams(name="gradnorm"), lds=True),
}


class StudyParams(ParamsModel):
    """The study: configurations x seeds, training, statistics."""

    tasks: dict[str, dict[str, Any]] = DEFAULT_TASKS
    lds: dict[str, Any] = {"bins": 30, "kernel": "gaussian", "kernel_size": 5, "sigma": 2.0}
    configurations: dict[str, Configuration] = DEFAULT_CONFIGURATIONS
    baseline: str = "single_task"
    seeds: int = Field(5, ge=2)
    base_seed: int = 0
    batch_size: int = Field(128, ge=1)
    model: ModelParams = ModelParams()
    training: StudyTrainerSettings = StudyTrainerSettings()
    alpha: float = Field(0.05, gt=0, lt=1)
    recovery_share: float = Field(0.5, gt=0, le=1)
    torch_threads: int | None = Field(1, ge=1)

    @field_validator("tasks")
    @classmethod
    def _valid_tasks(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        parse_tasks(value)
        return value

    @model_validator(mode="after")
    def _baseline_is_single_task(self) -> StudyParams:
        base = self.configurations.get(self.baseline)
        if base is None or base.kind != "single_task":
            raise ValueError(f"baseline: {self.baseline!r} must name a single_task configuration")
        parse_tasks(self.task_specs_raw(lds=True))
        return self

    @property
    def seed_list(self) -> list[int]:
        """The seeds, ``base_seed`` on."""
        return [self.base_seed + i for i in range(self.seeds)]

    def task_specs_raw(self, lds: bool) -> dict[str, dict[str, Any]]:
        """The task specs, with LDS switched on for the regression tasks when ``lds``."""
        if not lds:
            return {k: dict(v) for k, v in self.tasks.items()}
        return {
            k: {**v, "lds": {"enabled": True, **self.lds}} if v.get("kind") == "regression" else dict(v)
            for k, v in self.tasks.items()
        }

    def task_specs(self, lds: bool = False) -> list[TaskSpec]:
        """Parsed task specs."""
        return parse_tasks(self.task_specs_raw(lds))


class AlloyPropertiesParams(ParamsModel):
    """The whole ``alloy_properties`` section."""

    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    study: StudyParams = StudyParams()


def parse_study_params(params: Mapping[str, Any] | AlloyPropertiesParams | None) -> AlloyPropertiesParams:
    """Parse the ``alloy_properties`` section.

    Raises:
        alloy_mtl.config.ParameterError: every unknown key and bad value, with its YAML path.
    """
    return parse_params(AlloyPropertiesParams, params, SECTION)
