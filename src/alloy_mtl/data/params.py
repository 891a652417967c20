"""Typed parameters of the data_processing pipeline (``conf/base/parameters_data_processing.yml``).

Each section is parsed once by its node; unknown keys and bad values are named by their YAML path. The
simulator's own settings (``generation``) are :class:`alloy_mtl.physics.simulator.SimulationConfig`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from alloy_mtl.config.base import ParamsModel
from alloy_mtl.constants import ALLOYS, SPLITS


class DataSourceParams(ParamsModel):
    """Where the images come from: simulated, or a lab folder ingested by ``kind``."""

    kind: Literal["generated", "csv_folder", "class_per_folder"] = "generated"
    path: str | None = None
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _path_for_lab_data(self) -> DataSourceParams:
        if self.kind != "generated" and not self.path:
            raise ValueError(f"path: required when kind is '{self.kind}'")
        return self


class SplitParams(ParamsModel):
    """Specimen-grouped split stratified by alloy and thickness bin; minima count specimens."""

    seed: int = 42
    fractions: dict[Literal["train", "val", "test"], float] = {"train": 0.7, "val": 0.15, "test": 0.15}
    min_per_class: dict[Literal["train", "val", "test"], int] = {"train": 1, "val": 2, "test": 2}
    thickness_bins: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _every_split(self) -> SplitParams:
        for name, value in (("fractions", self.fractions), ("min_per_class", self.min_per_class)):
            missing = [s for s in SPLITS if s not in value]
            if missing:
                raise ValueError(f"{name}: missing split(s) {missing}")
        return self


class ValidationParams(ParamsModel):
    """The Great Expectations suite's physical ranges and where its Data Docs go."""

    data_docs_dir: str = "data/08_reporting/data_docs"
    thickness_range_mm: tuple[float, float] = (0.05, 100.0)
    absorption_range_per_cm: tuple[float, float] = (0.1, 50.0)
    required_alloys: tuple[str, ...] = ALLOYS
    suite_name: str = "xray_dataset"

    def suite_settings(self) -> dict[str, Any]:
        """The settings of :func:`alloy_mtl.data.expectations.run_expectations`."""
        return self.model_dump(exclude={"data_docs_dir"})
