"""Read one PNG or TIFF radiograph as float32 C x H x W in [0, 1], or say exactly why it cannot be used.

Scaling: uint8 / 255; uint16 / 65535, or / (2**bit_depth - 1) when the detector's true bit depth is declared
(12-bit detectors store uint16 whose maximum is 4095); floats are kept. RGB samples become channels; with
``grey_rgb=True`` (what ingestion asks) a grey radiograph saved as RGB (three identical channels) is one
channel, while an RGB image whose channels differ keeps them (energy channels).

A file of more than ``MAX_IMAGE_PIXELS`` pixel values is refused from its header, before it is decoded: a few
kilobytes of compressed PNG or TIFF can claim gigabytes (a decompression bomb).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from alloy_mtl.data.errors import DataValidationError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
MAX_IMAGE_PIXELS = 2**26
"""The most pixel values (height x width x channels) one image file may hold: 64 Mi, e.g. 4096 x 4096 x 4."""
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_PNG_MODES = ("L", "I;16", "I;16B", "I;16L", "RGB")
_EXPECTED = (
    "expected a greyscale radiograph: 8- or 16-bit grey, or RGB whose channels are equal (grey) or are "
    "energy channels"
)


@dataclass(frozen=True)
class LoadedImage:
    """An image's pixels (float32 C x H x W, scaled) with its stored dtype and raw maximum (for bit depth)."""

    pixels: np.ndarray
    stored_dtype: np.dtype
    raw_max: float


def read_image(path: str | Path, bit_depth: int | None = None, grey_rgb: bool = False) -> np.ndarray:
    """Read one PNG or TIFF file as a float32 C x H x W array scaled to [0, 1] (see the module docstring).

    ``grey_rgb``: an RGB image with three identical channels is returned as one channel.

    Raises:
        DataValidationError: the file is missing, empty, truncated or corrupt, has an unsupported mode or
            pixel type, exceeds the declared ``bit_depth``, or holds NaN/inf pixels.
    """
    return load_image(path, bit_depth, grey_rgb).pixels


def load_image(path: str | Path, bit_depth: int | None = None, grey_rgb: bool = False) -> LoadedImage:
    """:func:`read_image` plus the stored dtype and raw maximum, from which a caller judges the bit depth."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: empty file (0 bytes); expected a PNG or TIFF image")
    try:
        array = (
            _read_tiff(path, grey_rgb)
            if path.suffix.lower() in (".tif", ".tiff")
            else _read_pil(path, grey_rgb)
        )
    except DataValidationError:
        raise
    except Exception as exc:  # Pillow and tifffile raise many unrelated types for a corrupt file
        raise DataValidationError(
            f"{path}: unreadable or corrupt image file ({type(exc).__name__}: {exc})"
        ) from exc
    raw_max = float(array.max()) if array.size and array.dtype in _SCALE else float("nan")
    return LoadedImage(_scaled(path, array, bit_depth, raw_max), array.dtype, raw_max)


def _scaled(path: Path, array: np.ndarray, bit_depth: int | None, raw_max: float) -> np.ndarray:
    if array.dtype == np.uint16 and bit_depth is not None:
        top = float(2**bit_depth - 1)
        if raw_max > top:
            raise DataValidationError(
                f"{path}: pixel value {raw_max:.0f} exceeds the declared bit_depth {bit_depth} "
                f"(maximum {top:.0f}); correct data_source.options.bit_depth"
            )
        scaled = array.astype(np.float32) / np.float32(top)
    elif array.dtype in _SCALE:
        scaled = array.astype(np.float32) / np.float32(_SCALE[array.dtype])
    elif np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float32)
    else:
        raise DataValidationError(
            f"{path}: unsupported pixel type {array.dtype}; expected uint8, uint16 or float"
        )
    n_bad = int(np.count_nonzero(~np.isfinite(scaled)))
    if n_bad:
        raise DataValidationError(f"{path}: {n_bad} NaN/inf pixel(s); every pixel must be finite")
    return scaled


def _grey_if_equal(channels: np.ndarray) -> np.ndarray:
    """A 3-channel C x H x W array whose channels are identical becomes one channel."""
    if (
        channels.shape[0] == 3
        and np.array_equal(channels[0], channels[1])
        and np.array_equal(channels[0], channels[2])
    ):
        return channels[:1]
    return channels


def _read_pil(path: Path, grey_rgb: bool) -> np.ndarray:
    """A PNG (or other Pillow format) as C x H x W in its stored dtype."""
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError:  # Pillow's own limit, above ours: the header claims too much
        raise DataValidationError(_too_large(path, None)) from None
    with opened as image:
        values = image.size[0] * image.size[1] * len(image.getbands())
        if values > MAX_IMAGE_PIXELS:
            raise DataValidationError(_too_large(path, values))
        if image.mode in ("RGBA", "LA", "PA"):
            raise DataValidationError(
                f"{path}: {image.mode} image (with an alpha channel); {_EXPECTED}; re-save it without alpha"
            )
        if image.mode not in _PNG_MODES:
            raise DataValidationError(
                f"{path}: unsupported image mode {image.mode!r}; {_EXPECTED} (modes {list(_PNG_MODES)})"
            )
        array = np.asarray(image)
    if array.ndim == 2:
        return array[None]
    channels = np.moveaxis(array, -1, 0)
    return _grey_if_equal(channels) if grey_rgb else channels


def _read_tiff(path: Path, grey_rgb: bool) -> np.ndarray:
    """A TIFF's first series as C x H x W: every axis other than Y and X (pages, samples) becomes a channel."""
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise DataValidationError(f"{path}: unreadable or corrupt TIFF (no image data)")
        series = tif.series[0]
        values = int(np.prod(series.shape, dtype=np.int64))
        if values > MAX_IMAGE_PIXELS:
            raise DataValidationError(_too_large(path, values))
        array, axes = series.asarray(), series.axes
        rgb = series.keyframe.photometric == tifffile.PHOTOMETRIC.RGB
    if "Y" not in axes or "X" not in axes:
        raise DataValidationError(f"{path}: TIFF axes {axes!r} have no Y/X plane")
    array = np.moveaxis(array, (axes.index("Y"), axes.index("X")), (-2, -1))
    array = array.reshape(-1, *array.shape[-2:])
    return _grey_if_equal(array) if rgb and grey_rgb else array


def _too_large(path: Path, values: int | None) -> str:
    claim = "more pixels than Pillow decodes" if values is None else f"{values:,} pixel values"
    return (
        f"{path}: its header claims {claim}, more than the {MAX_IMAGE_PIXELS:,} an image may hold "
        "(refused before decoding); downsample or crop it"
    )
