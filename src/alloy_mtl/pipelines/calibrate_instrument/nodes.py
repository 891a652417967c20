"""Nodes of calibrate_instrument: thin wrappers over :mod:`alloy_mtl.physics.instrument_calibration`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from alloy_mtl.config import parse_params
from alloy_mtl.data.calibration_params import CalibrationParams
from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.frames import read_frames
from alloy_mtl.data.ingest import ingest_csv_folder
from alloy_mtl.data.store import XrayData
from alloy_mtl.evaluation.instrument_calibration_report import calibration_figure, calibration_markdown
from alloy_mtl.physics.calibrated_generation import nominal_generation
from alloy_mtl.physics.dark_offsets import dark_frame_problems, dark_offsets
from alloy_mtl.physics.fixed_pattern import residual_gain_pattern
from alloy_mtl.physics.flat_field_noise import flat_field_noise, flat_field_problems
from alloy_mtl.physics.instrument_calibration import calibrate_instrument
from alloy_mtl.physics.simulator import SimulationConfig


def read_calibration_folder(calibration: dict[str, Any]) -> XrayData:
    """The calibration radiographs of ``calibration.path`` (csv_folder layout), every bad file named at once.

    Raises:
        ValueError: ``calibration.path`` is not set.
        DataValidationError: bad files or rows (all listed).
    """
    params = parse_params(CalibrationParams, calibration, "calibration")
    if not params.path:
        raise ValueError(
            "calibration.path: required; give the calibration folder, e.g. "
            "`kedro run --pipeline calibrate_instrument --params calibration.path=/lab/calibration`"
        )
    return ingest_csv_folder(params.path, params.options)


def fit_calibrated_instrument(
    radiographs: XrayData, calibration: dict[str, Any], generation: dict[str, Any]
) -> tuple[dict[str, Any], str, Figure]:
    """Fit the instrument to the radiographs (their alloy and thickness known) against the nominal ``generation``
    config, the detector's blur and photons per pixel measured first on the flat fields where there are some (and
    the dark offset on the dark frames), and the residual gain pattern the flat-fielding left, read off the
    radiographs; returns the calibrated instrument record, its markdown report and the residual figure."""
    params = parse_params(CalibrationParams, calibration, "calibration")
    config = SimulationConfig.from_params(
        {**nominal_generation(generation), "instruments": 1, "tolerances": {}, "randomise": None}
    )
    started = time.perf_counter()
    folder, dark_folder = params.flats_folder(), params.darks_folder()
    if dark_folder is not None and folder is None:
        raise ValueError(
            f"calibration.darks: {dark_folder} given without flat fields; the dark offsets are measured in units "
            "of the open beam, which the flat fields give (calibration.flats)"
        )
    frames = _read_frame_folders(
        {"calibration.flats": folder, "calibration.darks": dark_folder}, params.options.bit_depth, config
    )
    noise = darks = None
    if "calibration.flats" in frames:
        noise = flat_field_noise(frames["calibration.flats"], config)
    if noise is not None and "calibration.darks" in frames:
        darks = dark_offsets(frames["calibration.darks"], noise.open_level)
    result = calibrate_instrument(
        radiographs.images,
        radiographs.metadata["alloy"].astype(str).tolist(),
        radiographs.metadata["thickness_mm"].to_numpy(dtype=float),
        config,
        fitted=params.fitted,
        search_ranges=params.search_ranges,
        thickness_sd_mm=params.thickness_sd_mm,
        identifiable_share=params.identifiable_share,
        per_channel_kv=params.per_channel_kv,
        known=None if noise is None else noise.instrument(),
        noise_variance=None if noise is None else noise.noise_variance,
    )
    seconds = time.perf_counter() - started
    pattern = residual_gain_pattern(radiographs.images)
    record = {
        **result.to_dict(),
        "fixed_pattern": pattern.to_dict(),
        "source": params.path,
        "kv": list(config.kv),
        "seconds": seconds,
    }
    flat_fields = None
    if noise is not None:
        flat_fields = {**noise.to_dict(), "source": str(folder)}
        flat_fields["dose_scale"] = result.instrument["dose_scale"]  # under the calibrated spectrum
        record["flat_fields"] = flat_fields
    if darks is not None:
        record["dark_frames"] = {**darks.to_dict(), "source": str(dark_folder)}
    return (
        record,
        calibration_markdown(
            result,
            str(params.path),
            seconds,
            flat_fields=flat_fields,
            fixed_pattern=pattern.to_dict(),
            dark_frames=record.get("dark_frames"),
        ),
        calibration_figure(result, config.kv),
    )


def _read_frame_folders(
    folders: dict[str, Path | None], bit_depth: int | None, config: SimulationConfig
) -> dict[str, np.ndarray]:
    """The frames of every given folder (setting -> folder; None: not given), every problem of every folder,
    in reading them or in what they hold (too few, too small, darks without a pedestal), named in one error
    before anything is written."""
    frames, problems = {}, []
    for parameter, folder in folders.items():
        if folder is None:
            continue
        try:
            frames[parameter] = read_frames(folder, bit_depth, parameter)
        except ValueError as error:  # DataValidationError is one
            problems.append(str(error))
    content = {
        "calibration.flats": lambda f: flat_field_problems(f, config),
        "calibration.darks": lambda f: dark_frame_problems(f, len(config.kv)),
    }
    problems += [
        f"{parameter} ({folders[parameter]}): {problem}"
        for parameter, check in content.items()
        if parameter in frames
        for problem in check(frames[parameter])
    ]
    if problems:
        raise DataValidationError("; ".join(problems))
    return frames
