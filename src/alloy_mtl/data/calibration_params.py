"""Parameters of ``kedro run --pipeline calibrate_instrument`` (``calibration`` in
``conf/base/parameters_calibrate_instrument.yml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from alloy_mtl.config import ParamsModel
from alloy_mtl.data.params import IngestOptions
from alloy_mtl.physics.instrument_calibration import (
    CALIBRATION_KEYS,
    DEFAULT_SEARCH_RANGES,
    resolve_search_ranges,
)

__all__ = ["DEFAULT_DARKS", "DEFAULT_FLATS", "CalibrationParams"]

DEFAULT_FLATS = "flats"
"""The calibration folder's subfolder read as flat fields when ``calibration.flats`` is not set."""
DEFAULT_DARKS = "darks"
"""The calibration folder's subfolder read as dark frames when ``calibration.darks`` is not set."""


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
    flats: str | Literal[False] | None = None
    """Flat fields (open-beam exposures, raw, any common scale; a folder of PNG/TIFF files or with a
    metadata.csv listing per-channel files): absolute or relative to ``path``. None: the ``flats`` subfolder
    of ``path`` where there is one; ``false``: none. They give the detector blur and photons per pixel, held in
    the fit, and the exposure-to-exposure level terms."""
    darks: str | Literal[False] | None = None
    """Dark frames (tube off, raw, the flat fields' scale, with the panel's pedestal): absolute or relative to
    ``path``. None: the ``darks`` subfolder of ``path`` where there is one; ``false``: none. With flat fields
    they give the per-exposure dark offset."""
    per_channel_kv: Literal["auto"] | bool = "auto"
    """Each channel's tube voltage on its own: ``auto`` where a likelihood-ratio test says the channels are not
    in their nominal ratios (p < 0.01), ``true`` always, ``false`` one factor on every channel."""

    def flats_folder(self) -> Path | None:
        """The flat-field folder to read, or None (see :attr:`flats`)."""
        return self._frames_folder(self.flats, DEFAULT_FLATS)

    def darks_folder(self) -> Path | None:
        """The dark-frame folder to read, or None (see :attr:`darks`)."""
        return self._frames_folder(self.darks, DEFAULT_DARKS)

    def _frames_folder(self, given: str | Literal[False] | None, default: str) -> Path | None:
        if given is False or not self.path:
            return None
        if given is None:
            folder = Path(self.path) / default
            return folder if folder.is_dir() else None
        folder = Path(given)
        return folder if folder.is_absolute() else Path(self.path) / folder

    @model_validator(mode="after")
    def _known_settings_and_ranges(self) -> CalibrationParams:
        _, problems = resolve_search_ranges(self.fitted, self.search_ranges)
        if problems:
            raise ValueError("; ".join(problems))
        return self
