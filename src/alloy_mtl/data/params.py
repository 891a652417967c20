"""Typed parameters of the data_processing pipeline (``conf/base/parameters_data_processing.yml``).

Each section is parsed once by its node; unknown keys and bad values are named by their YAML path. The
simulator's own settings (``generation``) are :class:`alloy_mtl.physics.simulator.SimulationConfig`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from alloy_mtl.config.base import ParamsModel
from alloy_mtl.constants import ALLOYS, SPLITS
from alloy_mtl.data.designations import DesignationError, parse_designation

#: Options that only one ingest layout reads.
LAYOUT_OPTIONS: dict[str, tuple[str, ...]] = {
    "csv_folder": ("metadata_file",),
    "class_per_folder": ("specimen_pattern", "kv"),
}


class IngestOptions(ParamsModel):
    """How a lab folder is read (``data_source.options``); see :mod:`alloy_mtl.data.ingest`."""

    metadata_file: str = "metadata.csv"
    """csv_folder: the metadata CSV inside the folder."""
    specimen_pattern: str | None = None
    """class_per_folder: regular expression searched in each file stem for the specimen (first group)."""
    kv: str = ""
    """class_per_folder: the ``kv`` value of every image."""
    required_alloys: tuple[str, ...] | None = ALLOYS
    """Alloys that must have at least one image (``null``: no check)."""
    alloy_names: dict[str, str] = {}
    """Folder name or CSV ``alloy`` value -> designation, for names the designation parser does not know."""
    on_bad_file: Literal["fail", "skip"] = "fail"
    """``fail``: any bad file stops the run (every one listed); ``skip``: bad files are dropped and reported."""
    bit_depth: int | None = Field(None, ge=1, le=16)
    """True bit depth of 16-bit images (12 for a 12-bit detector): they are scaled by 2**bit_depth - 1."""

    @field_validator("alloy_names", mode="before")
    @classmethod
    def _names_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):  # YAML reads {my_folder: 1050} as an int
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("alloy_names")
    @classmethod
    def _names_designate_alloys(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for name, designation in value.items():
            try:
                parse_designation(designation)
            except DesignationError as err:
                problems.append(f"{name!r}: {err.reason}")
        if problems:
            raise ValueError("; ".join(problems))
        return value


class LabImages(ParamsModel):
    """``data_source.lab_images``: a lab's labelled folder trained together with the simulation."""

    path: str
    """The lab's labelled folder."""
    kind: Literal["csv_folder", "class_per_folder"] = "csv_folder"
    """Its layout (as ``data_source.kind``)."""
    options: IngestOptions = IngestOptions(required_alloys=None)
    """How it is read (any alloys may be missing: the simulation has them all)."""
    share: float = Field(0.2, gt=0, lt=1)
    """The lab images are repeated until they number about this share of the generated images (at least once)."""


class DataSourceParams(ParamsModel):
    """Where the images come from: simulated, or a lab folder ingested by ``kind``."""

    kind: Literal["generated", "csv_folder", "class_per_folder"] = "generated"
    """``generated`` simulates the data; ``csv_folder`` and ``class_per_folder`` ingest a lab folder."""
    path: str | None = None
    """The lab folder (required unless ``kind`` is ``generated``)."""
    options: IngestOptions = IngestOptions()
    """How the lab folder is read."""
    lab_images: LabImages | None = None
    """With ``kind: generated``: a lab's few labelled images trained together with the simulation (the mixed
    option, ``alloy_mtl.data.lab_mix``); null: the simulation alone."""

    @model_validator(mode="after")
    def _path_for_lab_data(self) -> DataSourceParams:
        if self.kind != "generated" and not self.path:
            raise ValueError(f"path: required when kind is '{self.kind}'")
        if self.kind != "generated" and self.lab_images is not None:
            raise ValueError(f"lab_images: mixes a lab folder into generated data; kind is '{self.kind}'")
        foreign = [
            key
            for layout, keys in LAYOUT_OPTIONS.items()
            if layout != self.kind
            for key in keys
            if key in self.options.model_fields_set
        ]
        if foreign:
            raise ValueError(f"options {foreign}: not read when kind is '{self.kind}'")
        return self


class SplitParams(ParamsModel):
    """Specimen-grouped split stratified by alloy and thickness bin; minima count specimens.

    ``strategy``: ``auto`` keeps the split the data carry (split folders, a CSV ``split`` column) and
    otherwise splits; ``given`` requires the data's own split; ``grouped`` always splits (fractions, seed).
    """

    strategy: Literal["auto", "given", "grouped"] = "auto"
    """``auto``, ``given`` or ``grouped`` (see above)."""
    seed: int = 42
    """Seed of the grouped split."""
    fractions: dict[Literal["train", "val", "test"], float] = {"train": 0.7, "val": 0.15, "test": 0.15}
    """Share of the specimens in each split."""
    min_per_class: dict[Literal["train", "val", "test"], int] = {"train": 1, "val": 2, "test": 2}
    """Fewest specimens of every alloy in each split."""
    thickness_bins: int = Field(3, ge=1)
    """Thickness bins the split is stratified by, beside the alloy."""

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
    """Where the Great Expectations Data Docs site is written."""
    thickness_range_mm: tuple[float, float] = (0.05, 100.0)
    """Allowed range of ``thickness_mm``."""
    absorption_range_per_cm: tuple[float, float] = (0.1, 50.0)
    """Allowed range of ``absorption`` (1/cm)."""
    required_alloys: tuple[str, ...] = ALLOYS
    """Alloys that must each have images."""
    suite_name: str = "xray_dataset"
    """Name of the expectation suite."""

    def suite_settings(self) -> dict[str, Any]:
        """The settings of :func:`alloy_mtl.data.expectations.run_expectations`."""
        return self.model_dump(exclude={"data_docs_dir"})
