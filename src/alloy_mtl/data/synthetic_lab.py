"""Synthetic labs: an instrument with hidden settings, its calibration radiographs and a labelled test folder,
written as a lab stores them (16-bit PNG, one file per energy channel, or multi-page TIFF, plus metadata.csv).

A lab's instrument is never the nominal one. A synthetic lab draws its own detector unit and applies hidden
beam and detector settings (tolerance keys: ``kv_scale``, ``al_filter_mm``, ``scintillator_mm``,
``scatter_fraction_scale``, ``blur_sigma_px``, ``dose_scale``) to the nominal config, then images

- ``calibration/``: a few radiographs of a reference alloy (1050 by default) with their measured thickness, the
  input of ``kedro run --pipeline calibrate_instrument``;
- ``test/``: balanced specimens of every alloy with thickness and absorption labels, the input of
  ``kedro run --pipeline evaluate_external``;
- ``labelled/`` (when asked for): a few other labelled specimens of every alloy, the lab's own training images
  for the mixed option (``data_source.lab_images``);
- ``calibration/flats/`` (when asked for): raw open-beam exposures (counts at about 60 % of full scale through
  the panel's own pixel gain map, listed in their ``metadata.csv``), read by the calibration for the
  detector's blur, photons per pixel and exposure-to-exposure level terms;
- ``hidden_instrument.json``: the truth, which a real lab would not have, for tests and the benchmark.

Flat-field normalised intensities are stored as ``round(I * 65535)`` (clipped to [0, 1]), which the ingest
reads back as ``I`` to within 1/65535.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from alloy_mtl.constants import ALLOYS
from alloy_mtl.physics.alloys import get_alloy
from alloy_mtl.physics.flat_field_noise import LEVEL_FIELDS
from alloy_mtl.physics.instrument_fit import instrument_config, nominal_instrument
from alloy_mtl.physics.materials import OPEN_BEAM
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

__all__ = ["HIDDEN_INSTRUMENT_FILE", "SyntheticLab", "write_image_folder", "write_synthetic_lab"]

logger = logging.getLogger(__name__)

HIDDEN_INSTRUMENT_FILE = "hidden_instrument.json"
_FULL_SCALE = 65535.0
_FLAT_COUNTS = 40000.0
_DARK_PEDESTAL = 1000.0
_READ_NOISE = 2.0
_DETECTOR_FIELDS = (*LEVEL_FIELDS, "offset_sigma")
"""The hidden exposure-to-exposure terms a synthetic lab may set (``detector``)."""


@dataclass(frozen=True)
class SyntheticLab:
    """Where a synthetic lab was written and what it hides.

    Attributes:
        root: the lab folder.
        calibration: the calibration folder (csv_folder layout).
        test: the labelled test folder (csv_folder layout).
        labelled: the few labelled training images (csv_folder layout), or None.
        instrument: the hidden instrument (tolerance keys).
        detector_seed: the lab's detector unit.
        labelled: the lab's few labelled training images, or None.
        channel_kv_scale: each channel's hidden tube-voltage factor on top of ``kv_scale`` (None: all 1).
    """

    root: Path
    calibration: Path
    test: Path
    instrument: dict[str, float]
    detector_seed: int
    labelled: Path | None = None
    channel_kv_scale: tuple[float, ...] | None = None


def _to_uint16(channel: np.ndarray) -> np.ndarray:
    return np.round(np.clip(channel, 0.0, 1.0) * _FULL_SCALE).astype(np.uint16)


def write_image_folder(
    folder: Path,
    images: np.ndarray,
    metadata: pd.DataFrame,
    kv: Sequence[float],
    image_format: Literal["png", "tiff"] = "png",
) -> pd.DataFrame:
    """Write ``images`` (N, C, H, W, I/I0) and their ``metadata.csv`` into ``folder`` (csv_folder layout).

    PNG: one 16-bit file per channel, joined by ``;`` in ``path``; TIFF: one multi-page file per image.

    Raises:
        FileExistsError: ``folder`` exists and is not empty (nothing a user had is overwritten).
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder}: exists and is not empty; choose a new folder")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for image, image_id in zip(images, metadata["image_id"].astype(str), strict=True):
        if image_format == "tiff":
            relative = f"images/{image_id}.tif"
            tifffile.imwrite(folder / relative, _to_uint16(image), photometric="minisblack")
            paths.append(relative)
            continue
        parts = []
        for channel, volts in zip(image, kv, strict=True):
            relative = f"images/{image_id}_{volts:g}kv.png"
            Image.fromarray(_to_uint16(channel)).save(folder / relative)
            parts.append(relative)
        paths.append(";".join(parts))
    columns = ["image_id", "specimen_id", "alloy", "thickness_mm", "absorption", "kv"]
    table = metadata[[c for c in columns if c in metadata.columns]].copy()
    table.insert(3, "path", paths)
    table.to_csv(folder / "metadata.csv", index=False)
    return table


def _write_flats(
    folder: Path, lab: SimulationConfig, n_flats: int, seed: int, image_format: Literal["png", "tiff"]
) -> None:
    """Raw open-beam exposures of the lab's instrument: its flat-field normalised open beam through a static
    pixel gain map (3 %), at ``_FLAT_COUNTS``."""
    flats, metadata = simulate_dataset(
        dataclasses.replace(lab, seed=seed, images_per_specimen=1), materials=[(OPEN_BEAM, n_flats)]
    )
    panel = 1.0 + 0.03 * np.random.default_rng(lab.detector_seed).standard_normal(flats.shape[1:])
    raw = np.round(flats * panel * _FLAT_COUNTS) / _FULL_SCALE
    ids = [f"flat-{i:03d}" for i in range(n_flats)]
    write_image_folder(folder, raw, metadata.assign(image_id=ids), lab.kv, image_format)


def _write_darks(
    folder: Path, lab: SimulationConfig, n_darks: int, seed: int, image_format: Literal["png", "tiff"]
) -> None:
    """Raw dark frames: ``_DARK_PEDESTAL`` counts, the per-exposure offset (``offset_sigma``) and the per-pixel
    offset pattern (``fixed_pattern_offset_sigma``) at the flat fields' scale, and read noise."""
    rng = np.random.default_rng(seed)
    shape = (n_darks, len(lab.kv), lab.image_size, lab.image_size)
    pattern = lab.fixed_pattern_offset_sigma * np.random.default_rng(lab.detector_seed).standard_normal(
        shape[1:]
    )
    exposure = lab.offset_sigma * rng.standard_normal(shape[:2])[:, :, None, None]
    counts = _DARK_PEDESTAL + _FLAT_COUNTS * (exposure + pattern) + _READ_NOISE * rng.standard_normal(shape)
    ids = [f"dark-{i:03d}" for i in range(n_darks)]
    table = pd.DataFrame({"image_id": ids, "specimen_id": ids, "alloy": "dark"})
    write_image_folder(folder, np.round(counts) / _FULL_SCALE, table, lab.kv, image_format)


def write_synthetic_lab(  # noqa: PLR0913 (a lab's description, each argument documented)
    root: str | Path,
    config: SimulationConfig,
    instrument: Mapping[str, float],
    *,
    detector_seed: int = 7001,
    seed: int = 11,
    n_calibration: int = 10,
    reference_alloy: str = "1050",
    test_per_alloy: int = 50,
    labelled_per_alloy: int = 0,
    image_format: Literal["png", "tiff"] = "png",
    channel_kv_scale: Sequence[float] | None = None,
    n_flats: int = 0,
    detector: Mapping[str, float] | None = None,
    n_darks: int = 0,
) -> SyntheticLab:
    """Write a synthetic lab (see the module docstring) whose instrument is ``config`` changed by ``instrument``.

    Args:
        root: the new lab folder (must not exist or be empty).
        config: the nominal simulation config (channels, geometry, noise levels); one detector unit is used.
        instrument: hidden settings (tolerance keys; missing keys stay nominal).
        detector_seed: the lab's detector unit.
        seed: seed of the specimens and exposures.
        n_calibration: calibration radiographs of ``reference_alloy`` (one per specimen).
        test_per_alloy: labelled test images per alloy (three per specimen).
        labelled_per_alloy: labelled training images per alloy (three per specimen, other specimens than the
            test's); 0: no ``labelled/`` folder.
        image_format: ``png`` (one 16-bit file per channel) or ``tiff`` (one multi-page file per image).
        channel_kv_scale: a further hidden factor on each channel's tube voltage (a tube whose voltages are
            not in their nominal ratios); None: every channel as ``kv_scale`` says.
        n_flats: flat fields written to ``calibration/flats`` (0: none).
        detector: hidden exposure-to-exposure level terms (``drift``, ``gain_sigma``, ``heel_jitter``,
            ``offset_sigma``) replacing the config's.
        n_darks: raw dark frames written to ``calibration/darks`` (0: none): a pedestal, the per-exposure and
            per-pixel offsets at the flat fields' scale, read noise.

    Raises:
        ValueError: unknown instrument keys, counts below 1, or channel factors that are not one > 0 per
            channel.
        FileExistsError: ``root`` exists and is not empty.
    """
    root = Path(root)
    nominal = nominal_instrument(config)
    unknown = sorted(set(instrument) - set(nominal))
    problems = [f"instrument keys {unknown} are not among {sorted(nominal)}"] if unknown else []
    problems += [
        f"{name} must be >= 1, got {count}"
        for name, count in (("n_calibration", n_calibration), ("test_per_alloy", test_per_alloy))
        if count < 1
    ]
    if labelled_per_alloy < 0:
        problems.append(f"labelled_per_alloy must be >= 0, got {labelled_per_alloy}")
    problems += [
        f"{name} must be >= 0, got {count}"
        for name, count in (("n_flats", n_flats), ("n_darks", n_darks))
        if count < 0
    ]
    levels = {k: float(v) for k, v in (detector or {}).items()}
    unknown_levels = sorted(set(levels) - set(_DETECTOR_FIELDS))
    if unknown_levels:
        problems.append(f"detector keys {unknown_levels} are not among {list(_DETECTOR_FIELDS)}")
    factors = None if channel_kv_scale is None else [float(f) for f in channel_kv_scale]
    if factors is not None and (len(factors) != len(config.kv) or not all(f > 0 for f in factors)):
        problems.append(
            f"channel_kv_scale must give one factor > 0 per channel of kv={list(config.kv)}, got {factors}"
        )
    if problems:
        raise ValueError("synthetic lab: " + "; ".join(problems))
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: exists and is not empty; choose a new folder for the synthetic lab")
    hidden = {**nominal, **{k: float(v) for k, v in instrument.items()}}
    lab = dataclasses.replace(
        instrument_config(config, hidden, factors),
        detector_seed=detector_seed,
        instruments=1,
        tolerances=(),
        randomise=None,
        **levels,
    )
    images, metadata = simulate_dataset(
        dataclasses.replace(lab, seed=seed, images_per_specimen=1),
        materials=[(get_alloy(reference_alloy), n_calibration)],
    )
    calibration = root / "calibration"
    write_image_folder(calibration, images, metadata.assign(kv=config.kv_label), config.kv, image_format)
    if n_flats:
        _write_flats(calibration / "flats", lab, n_flats, seed + 3, image_format)
    if n_darks:
        _write_darks(calibration / "darks", lab, n_darks, seed + 4, image_format)
    test_config = dataclasses.replace(
        lab,
        seed=seed + 1,
        n_images=test_per_alloy * len(ALLOYS),
        imbalance_ratio=1.0,
        min_images_per_class=test_per_alloy,
        images_per_specimen=3,
    )
    images, metadata = simulate_dataset(test_config)
    test = root / "test"
    write_image_folder(test, images, metadata.assign(kv=config.kv_label), config.kv, image_format)
    labelled = None
    if labelled_per_alloy:
        labelled_config = dataclasses.replace(
            test_config,
            seed=seed + 2,
            n_images=labelled_per_alloy * len(ALLOYS),
            min_images_per_class=labelled_per_alloy,
        )
        images, train_metadata = simulate_dataset(labelled_config)
        train_metadata["specimen_id"] = "lab-" + train_metadata["specimen_id"].astype(str)
        train_metadata["image_id"] = "lab-" + train_metadata["image_id"].astype(str)
        labelled = root / "labelled"
        write_image_folder(
            labelled, images, train_metadata.assign(kv=config.kv_label), config.kv, image_format
        )
    record = {"instrument": hidden, "detector_seed": detector_seed, "seed": seed, "kv": list(config.kv)}
    if factors is not None:
        record |= {"channel_kv_scale": factors, "lab_kv": list(lab.kv)}
    record["detector"] = {name: float(getattr(lab, name)) for name in _DETECTOR_FIELDS}
    (root / HIDDEN_INSTRUMENT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    logger.info("wrote synthetic lab %s: %d calibration, %d test images", root, n_calibration, len(metadata))
    return SyntheticLab(
        root, calibration, test, hidden, detector_seed, labelled, None if factors is None else tuple(factors)
    )
