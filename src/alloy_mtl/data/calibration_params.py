"""Parameters of ``kedro run --pipeline calibrate_instrument`` (``calibration`` in
``conf/base/parameters_calibrate_instrument.yml``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from alloy_mtl.config import ParamsModel
from alloy_mtl.data.params import IngestOptions
from alloy_mtl.physics.instrument_calibration import (
    CALIBRATION_KEYS,
    DEFAULT_SEARCH_RANGES,
    resolve_search_ranges,
)

__all__ = ["CalibrationParams"]


class CalibrationParams(ParamsModel):
    """Where the lab's calibration radiographs are and how the instrument is fitted to them."""

    path: str | None = None
    """The calibration folder (csv_folder layout: metadata.csv with image_id, specimen_id, alloy, path,
    thickness_mm; 16-bit PNG/TIFF, one file per channel allowed). Required to run the pipeline."""
    options: IngestOptions = IngestOptions(required_alloys=None)
    """How the folder is read (metadata_file, bit_depth, alloy_names, on_bad_file); any alloy may be the
    reference."""
    fitted: tuple[str, ...] = CALIBRATION_KEYS
    """Instrument settings fitted (the others stay nominal)."""
    search_ranges: dict[str, tuple[float, float]] = {k: tuple(v) for k, v in DEFAULT_SEARCH_RANGES.items()}
    """Range searched per setting (given keys replace the defaults)."""
    thickness_sd_mm: float = Field(0.02, gt=0)
    """Uncertainty of the specimens' measured thickness (mm)."""
    identifiable_share: float = Field(0.5, gt=0, le=1)
    """A setting whose 95 % interval spans more than this share of its search range is not identifiable."""

    @model_validator(mode="after")
    def _known_settings_and_ranges(self) -> CalibrationParams:
        _, problems = resolve_search_ranges(self.fitted, self.search_ranges)
        if problems:
            raise ValueError("; ".join(problems))
        return self
