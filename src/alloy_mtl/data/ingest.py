"""Bring-your-own-data: read a lab folder of PNG/TIFF radiographs into :class:`XrayData` and a report of
every file (nothing is written).

Two layouts (``scan_dataset(root, layout, options)``; options: :class:`alloy_mtl.data.params.IngestOptions`):

``"csv_folder"``
    ``root/metadata.csv`` with the data-contract columns; ``path`` is relative to ``root``. Required columns:
    ``image_id, specimen_id, alloy, path``; ``thickness_mm``, ``absorption`` (missing -> NaN), ``kv``
    (missing -> "") and ``split`` (the lab's own split, kept in ``given_split``) are optional. One row per
    image. A row's ``path`` names either one file holding the whole image (grayscale or grey-as-RGB -> 1
    channel; multi-page or multi-sample TIFF, or RGB with distinct channels -> one channel per page/sample)
    or one single-channel file per channel separated by ``";"`` (``"a_40kv.png;a_80kv.png"``).

``"class_per_folder"``
    ``root/{train,val,test}/<alloy>/*.png|*.tif|*.tiff`` or ``root/<alloy>/*`` without split folders
    (``training``, ``valid``, ``validation``, ``testing`` are split folders too). The split folder is kept
    in ``given_split``; thickness and absorption are NaN. ``specimen_id`` is ``"<alloy folder>/<stem>"``, or
    ``"<alloy folder>/<match>"`` where ``specimen_pattern`` is a regular expression searched in the stem (its
    first group, or the whole match when it has none). ``image_id`` is the file path relative to ``root``
    without its suffix.

The ``alloy`` (folder name or CSV value) is any spelling :func:`parse_designation` accepts (``Al1050``,
``EN AW-7075-T6``, ``AlZn5.5MgCu``) or a key of ``alloy_names``; the text as written is kept in
``alloy_designation``, the national variant letter in ``alloy_variant`` and the temper in ``temper``.

Every problem is collected before anything fails: each file gets a status in the report
(:mod:`alloy_mtl.data.ingest_report`); :func:`ingest_dataset` raises one :class:`DataValidationError`
listing them all, or, with ``on_bad_file: skip``, drops the bad files and goes on. Every image must have the
shape most images have and only finite pixels; 16-bit images are scaled by ``bit_depth`` when declared, and
a warning names the likely bit depth when their maximum stays far below 65535.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.config import parse_params
from alloy_mtl.constants import METADATA_COLUMNS, SPLITS
from alloy_mtl.data.designations import DesignationError, parse_designation
from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.images import IMAGE_SUFFIXES, LoadedImage, load_image, read_image
from alloy_mtl.data.ingest_report import REPORT_COLUMNS, raise_for_report
from alloy_mtl.data.params import IngestOptions
from alloy_mtl.data.schema import validate_metadata
from alloy_mtl.data.split import GIVEN_COLUMN, SPLIT_ALIASES, canonical_split
from alloy_mtl.data.store import XrayData

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "Ingested",
    "ingest_class_folders",
    "ingest_csv_folder",
    "ingest_dataset",
    "read_image",
    "scan_dataset",
]

logger = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("csv_folder", "class_per_folder")
CHANNEL_SEPARATOR = ";"
#: A 16-bit dataset whose maximum stays below this share of 65535 draws the bit-depth warning.
LOW_RANGE_SHARE = 0.25


@dataclass
class Ingested:
    """The usable images (bad files dropped) and the report of every file with its status."""

    data: XrayData
    report: pd.DataFrame


@dataclass
class _Entry:
    """One image (a CSV row or a file of an alloy folder) or a bad folder without images."""

    index: int
    row: dict[str, Any]
    files: list[Path]
    location: str
    problem: str = ""
    image: np.ndarray | None = None
    raw_max16: float = math.nan

    @property
    def path_text(self) -> str:
        return CHANNEL_SEPARATOR.join(str(f) for f in self.files) or self.location

    def fail(self, problem: str) -> None:
        """Mark the entry bad; when the location is not the file itself the problem names the file."""
        prefix = f"{self.path_text}: "
        if self.location == self.path_text:
            problem = problem.removeprefix(prefix)
        self.problem = problem


@dataclass
class _Scan:
    entries: list[_Entry] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def ingest_dataset(
    root: str | Path, layout: str, options: IngestOptions | None = None, **overrides: object
) -> XrayData:
    """Read a dataset laid out as ``layout`` under ``root``; fail listing every problem (see module docstring).

    Raises:
        DataValidationError: every bad file (unless ``on_bad_file`` is ``skip``) and every dataset problem.
    """
    ingested = scan_dataset(root, layout, options, **overrides)
    raise_for_report(ingested.report, where=str(root))
    return ingested.data


def ingest_csv_folder(
    root: str | Path, options: IngestOptions | None = None, **overrides: object
) -> XrayData:
    """:func:`ingest_dataset` of the ``csv_folder`` layout."""
    return ingest_dataset(root, "csv_folder", options, **overrides)


def ingest_class_folders(
    root: str | Path, options: IngestOptions | None = None, **overrides: object
) -> XrayData:
    """:func:`ingest_dataset` of the ``class_per_folder`` layout."""
    return ingest_dataset(root, "class_per_folder", options, **overrides)


def scan_dataset(
    root: str | Path, layout: str, options: IngestOptions | None = None, **overrides: object
) -> Ingested:
    """Read every file of the dataset, recording each file's status instead of failing on the first.

    Args:
        root: the dataset folder.
        layout: ``"csv_folder"`` or ``"class_per_folder"``.
        options: ingest options; ``overrides`` (keyword options) are merged over them.

    Raises:
        DataValidationError: problems that leave no file to examine (folder or CSV missing, CSV unparsable,
            required columns missing).
        ValueError: an unknown layout.
        ParameterError: unknown or bad options.
    """
    opts = _options(options, overrides)
    root = Path(root)
    if layout == "csv_folder":
        scan, where = _scan_csv(root, opts), str(root / opts.metadata_file)
    elif layout == "class_per_folder":
        scan, where = _scan_class_folders(root, opts), str(root)
    else:
        raise ValueError(f"ingest_dataset: unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    return _finish(scan, where, opts)


def _options(options: IngestOptions | None, overrides: Mapping[str, object]) -> IngestOptions:
    base = options.model_dump(exclude_unset=True) if options is not None else {}
    return parse_params(IngestOptions, {**base, **overrides}, "data_source.options")


# ---- csv_folder ----


def _scan_csv(root: Path, opts: IngestOptions) -> _Scan:
    csv_path = root / opts.metadata_file
    metadata = _read_csv(csv_path)
    scan = _Scan()
    if "split" in metadata.columns:
        scan.errors += _given_split_from_csv(metadata)
    for index, record in zip(metadata.index, metadata.to_dict("records"), strict=True):
        files = split_paths(root, record["path"])
        entry = _Entry(
            index=int(index),
            row={**record, "path": CHANNEL_SEPARATOR.join(str(f) for f in files)},
            files=files,
            location=f"{csv_path} row {index} (image_id={record['image_id']})",
        )
        if not files:
            entry.fail("empty path")
        _designate(entry, record["alloy"], opts.alloy_names, column="column 'alloy': ")
        _refuse_outside(entry, root)
        scan.entries.append(entry)
    listed = {f.resolve() for entry in scan.entries for f in entry.files}
    scan.ignored = [
        (f, f"not listed in {opts.metadata_file}")
        for f in _visible_files(root)
        if f.suffix.lower() in IMAGE_SUFFIXES and f.resolve() not in listed
    ]
    return scan


def _read_csv(csv_path: Path) -> pd.DataFrame:
    """The metadata CSV with the optional columns completed (problems that stop the scan raise)."""
    if not csv_path.is_file():
        raise DataValidationError(f"{csv_path}: metadata CSV not found")
    text_columns = {"image_id": str, "specimen_id": str, "alloy": str, "kv": str, "path": str, "split": str}
    try:
        raw = pd.read_csv(csv_path, dtype=text_columns)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"{csv_path}: cannot parse CSV: {exc}") from exc
    missing = [c for c in ("image_id", "specimen_id", "alloy", "path") if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"{csv_path}: missing required column(s) {missing}; columns are {list(raw.columns)}"
        )
    metadata = raw.copy()
    for column in ("thickness_mm", "absorption"):
        if column not in metadata.columns:
            metadata[column] = np.nan
    metadata["kv"] = metadata["kv"].fillna("") if "kv" in metadata.columns else ""
    metadata["path"] = metadata["path"].fillna("")
    metadata["source"] = "ingested"
    return metadata


def _given_split_from_csv(metadata: pd.DataFrame) -> list[str]:
    """Move the CSV ``split`` column to ``given_split`` (aliases mapped); unknown values are problems."""
    values = metadata.pop("split")
    canonical = values.map(canonical_split)
    unknown = values.notna() & canonical.isna()
    metadata[GIVEN_COLUMN] = canonical.where(canonical.notna(), None)
    return [
        f"column 'split' row {row} (image_id={metadata.loc[row, 'image_id']}, value={values[row]!r}): "
        f"expected one of {list(SPLITS)} (or {sorted(set(SPLIT_ALIASES) - set(SPLITS))}) or empty"
        for row in metadata.index[unknown]
    ]


def _refuse_outside(entry: _Entry, root: Path) -> None:
    """Mark the entry bad when one of its files leads outside the lab folder: a dataset reads only what its
    folder holds."""
    problem = outside_folder_problem(entry.files, root)
    if problem:
        entry.fail(problem)


def outside_folder_problem(files: Sequence[Path], root: Path) -> str:
    """Why the first of ``files`` that leads outside ``root`` (``..``, an absolute path or a symlink) may not be
    read; "" when all stay inside."""
    inside = root.resolve()
    for file in files:
        target = file.resolve()
        if not target.is_relative_to(inside):
            how = "a symlink" if any(p.is_symlink() for p in (file, *file.parents)) else "a path"
            return (
                f"{file}: {how} leading outside the lab folder {root} (to {target}); copy the image into it"
            )
    return ""


def split_paths(root: Path, value: str) -> list[Path]:
    """The files of a CSV ``path`` cell (``;``-separated for per-channel files), relative to ``root``."""
    return [root / part.strip() for part in str(value).split(CHANNEL_SEPARATOR) if part.strip()]


# ---- class_per_folder ----


def _scan_class_folders(root: Path, opts: IngestOptions) -> _Scan:
    if not root.is_dir():
        raise DataValidationError(f"{root}: dataset folder not found")
    pattern = re.compile(opts.specimen_pattern) if opts.specimen_pattern else None
    scan = _Scan()
    for split, folder, stray in _alloy_folders(root):
        images = [f for f in _visible_files(folder, recursive=False) if f.suffix.lower() in IMAGE_SUFFIXES]
        folder_problem = stray or _designation_problem(folder.name, opts.alloy_names)
        if not images and folder_problem:
            scan.entries.append(_folder_entry(len(scan.entries), folder, split, folder_problem))
        for file in images:
            entry = _file_entry(len(scan.entries), root, file, split, opts.kv)
            if folder_problem:
                entry.location, entry.problem = str(folder), folder_problem
            else:
                _designate(entry, folder.name, opts.alloy_names)
                _assign_specimen(entry, folder.name, file, pattern)
            _refuse_outside(entry, root)
            scan.entries.append(entry)
    listed = {f for entry in scan.entries for f in entry.files}
    scan.ignored = [(f, _ignored_reason(f)) for f in _visible_files(root) if f not in listed]
    return scan


def _alloy_folders(root: Path) -> Iterator[tuple[str | None, Path, str]]:
    """``(split or None, folder, problem)`` of every alloy folder; a stray beside split folders is a problem."""
    folders = _subfolders(root)
    if not any(canonical_split(p.name) for p in folders):
        yield from ((None, p, "") for p in folders)
        return
    for folder in folders:
        split = canonical_split(folder.name)
        if split is None:
            yield (
                None,
                folder,
                f"folder {folder.name!r} is neither a split folder {list(SPLITS)} nor allowed beside them",
            )
            continue
        yield from ((split, p, "") for p in _subfolders(folder))


def _file_entry(index: int, root: Path, file: Path, split: str | None, kv: str) -> _Entry:
    row = {
        "image_id": file.relative_to(root).with_suffix("").as_posix(),
        "specimen_id": "",
        "alloy": "",
        "thickness_mm": np.nan,
        "absorption": np.nan,
        "kv": kv,
        "source": "ingested",
        "path": str(file),
        "alloy_designation": file.parent.name,
    }
    if split is not None:
        row[GIVEN_COLUMN] = split
    return _Entry(index=index, row=row, files=[file], location=str(file))


def _folder_entry(index: int, folder: Path, split: str | None, problem: str) -> _Entry:
    row = {"image_id": "", "alloy": "", "alloy_designation": folder.name, GIVEN_COLUMN: split}
    return _Entry(index=index, row=row, files=[], location=str(folder), problem=problem)


def _assign_specimen(entry: _Entry, folder: str, file: Path, pattern: re.Pattern[str] | None) -> None:
    """``specimen_id`` of a file of an alloy folder (see the module docstring), or the pattern's problem."""
    if pattern is None:
        entry.row["specimen_id"] = f"{folder}/{file.stem}"
        return
    match = pattern.search(file.stem)
    if match is None:
        entry.fail(f"specimen_pattern {pattern.pattern!r} does not match the stem {file.stem!r}")
        return
    entry.row["specimen_id"] = f"{folder}/{match.group(1) if pattern.groups else match.group(0)}"


def _designation_problem(name: str, names: Mapping[str, str]) -> str:
    """Why a folder name designates none of the five alloys ("" when it does)."""
    try:
        parse_designation(name, names)
    except DesignationError as err:
        return str(err)
    return ""


def _ignored_reason(file: Path) -> str:
    if file.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not a {'/'.join(IMAGE_SUFFIXES)} image"
    return "not directly inside an alloy folder ([split/]<alloy>/<image>)"


# ---- shared ----


def _designate(entry: _Entry, text: object, names: Mapping[str, str], column: str = "") -> None:
    """Set the entry's alloy, designation, variant and temper from ``text``, or its problem."""
    if entry.problem:
        return
    if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
        entry.problem = f"{column}empty alloy; expected an alloy designation"
        return
    try:
        designation = parse_designation(text, names)
    except DesignationError as err:
        entry.problem = f"{column}{err}"
        return
    own_temper = entry.row.get("temper")
    entry.row.update(
        alloy=designation.alloy,
        alloy_designation=designation.text,
        alloy_variant=designation.variant,
        temper=own_temper if isinstance(own_temper, str) and own_temper.strip() else designation.temper,
    )


def _visible_files(folder: Path, recursive: bool = True) -> list[Path]:
    """Sorted files under ``folder``, hidden ones and those in hidden folders (``.ipynb_checkpoints``) left out."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in found
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _subfolders(folder: Path) -> list[Path]:
    """Sorted sub-folders, hidden ones (``.ipynb_checkpoints``) skipped."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _finish(scan: _Scan, where: str, opts: IngestOptions) -> Ingested:
    """Read the images, judge shapes and bit depth, validate what is left, and build data and report."""
    for entry in scan.entries:
        _read_entry(entry, opts.bit_depth)
    _check_shapes(scan.entries)
    _warn_low_range(scan.entries, opts.bit_depth, where)
    kept = [e for e in scan.entries if not e.problem]
    metadata, errors = _validated(kept, where, opts)
    if not scan.entries:
        errors = [
            f"no {'/'.join(IMAGE_SUFFIXES)} images found (see the layouts in docs/guide/data.md, 'Bring your own data')"
        ]
    images = _stack(kept)
    bad = "skipped" if opts.on_bad_file == "skip" else "bad"
    report = _report(scan, [*scan.errors, *errors], where, bad)
    return Ingested(XrayData(images=images, metadata=metadata), report)


def _read_entry(entry: _Entry, bit_depth: int | None) -> None:
    """Read the entry's channel files into ``entry.image``, or record why it cannot be used."""
    if entry.problem:
        return
    try:
        loaded = load_channel_files(entry.files, bit_depth, grey_rgb=True)
    except DataValidationError as err:
        entry.fail(str(err))
        return
    entry.image = np.concatenate([image.pixels for image in loaded], axis=0)
    maxima = [image.raw_max for image in loaded if image.stored_dtype == np.uint16]
    entry.raw_max16 = max(maxima) if maxima else math.nan


def load_channel_files(files: Sequence[Path], bit_depth: int | None, grey_rgb: bool) -> list[LoadedImage]:
    """An image's file, or its per-channel files in order (each must hold one channel).

    Raises:
        DataValidationError: a file the reader refuses, or a per-channel file holding several channels.
    """
    loaded = [load_image(f, bit_depth, grey_rgb=grey_rgb or len(files) > 1) for f in files]
    if len(loaded) > 1:
        for file, image in zip(files, loaded, strict=True):
            if image.pixels.shape[0] != 1:
                raise DataValidationError(
                    f"{file}: a per-channel file must hold one channel, found {image.pixels.shape[0]}"
                )
    return loaded


def _check_shapes(entries: list[_Entry]) -> None:
    """Every image must have the shape most images have; the others are bad, naming that shape."""
    read = [(e, e.image.shape) for e in entries if e.image is not None]
    if not read:
        return
    expected, count = Counter(shape for _, shape in read).most_common(1)[0]
    first = next(e for e, shape in read if shape == expected)
    for entry, shape in read:
        if shape != expected:
            entry.fail(
                f"{entry.path_text}: image shape {shape} (C, H, W) differs from the expected shape {expected} "
                f"of {count} of {len(read)} images (first: {first.path_text}); all images must share one shape"
            )
            entry.image = None


def _warn_low_range(entries: list[_Entry], bit_depth: int | None, where: str) -> None:
    """Warn when 16-bit images use only a small part of 0..65535 and no ``bit_depth`` was declared."""
    maxima = [e.raw_max16 for e in entries if not e.problem and not math.isnan(e.raw_max16)]
    if bit_depth is not None or not maxima:
        return
    top = max(maxima)
    if top < 65535 * LOW_RANGE_SHARE:
        bits = max(int(top).bit_length(), 1)
        logger.warning(
            "%s: the %d 16-bit image(s) reach at most %d of 65535, so they are scaled into [0, %.3f]; from a "
            "%d-bit detector? set data_source.options.bit_depth: %d to scale by the true range",
            where,
            len(maxima),
            int(top),
            top / 65535,
            bits,
            bits,
        )


def _validated(kept: list[_Entry], where: str, opts: IngestOptions) -> tuple[pd.DataFrame, list[str]]:
    """The metadata of the usable entries, schema-checked; the schema's problems as lines (not raised)."""
    if not kept:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in METADATA_COLUMNS})
        return empty, ["no usable image: every image is bad"]
    metadata = pd.DataFrame([e.row for e in kept], index=[e.index for e in kept])
    metadata = metadata[
        [c for c in METADATA_COLUMNS if c in metadata.columns]
        + [c for c in metadata.columns if c not in METADATA_COLUMNS]
    ]
    try:
        metadata = validate_metadata(metadata, where=where, required_alloys=opts.required_alloys)
    except DataValidationError as err:
        return metadata.reset_index(drop=True), [
            line.removeprefix(f"{where}: ") for line in str(err).splitlines()
        ]
    return metadata.reset_index(drop=True), []


def _stack(kept: list[_Entry]) -> np.ndarray:
    """One N x C x H x W float32 array; each entry's image is released once copied."""
    if not kept:
        return np.empty((0, 1, 1, 1), dtype=np.float32)
    images: np.ndarray | None = None
    for i, entry in enumerate(kept):
        if images is None:
            images = np.empty((len(kept), *np.shape(entry.image)), dtype=np.float32)
        images[i], entry.image = entry.image, None
    assert images is not None
    logger.info("Ingested %d images of shape %s", len(kept), images.shape[1:])
    return images


def _report(scan: _Scan, errors: list[str], where: str, bad: str) -> pd.DataFrame:
    """Every entry, ignored file and dataset problem as one report row (:data:`REPORT_COLUMNS`)."""
    rows = [
        {
            "path": entry.path_text,
            "image_id": entry.row.get("image_id", ""),
            "designation": entry.row.get("alloy_designation", ""),
            "alloy": entry.row.get("alloy", ""),
            "given_split": entry.row.get(GIVEN_COLUMN),
            "status": bad if entry.problem else "ok",
            "location": entry.location,
            "problem": entry.problem,
        }
        for entry in scan.entries
    ]
    rows += [
        {"path": str(f), "status": "ignored", "location": str(f), "problem": why} for f, why in scan.ignored
    ]
    rows += [{"path": where, "status": "error", "location": where, "problem": line} for line in errors]
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    return report.astype(object).where(report.notna(), "").astype(str)
