"""The consolidated array store: roundtrip, memory mapping, atomic replacement, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.data.store import XrayData, open_store, write_store


def test_roundtrip_float16_memmap(tmp_path: Path, images: np.ndarray, metadata: pd.DataFrame) -> None:
    store = write_store(XrayData(images, metadata), tmp_path / "store", chunk_size=7)
    data = open_store(store)
    assert isinstance(data.images, np.memmap)
    assert data.images.dtype == np.float16
    assert data.images.shape == images.shape
    # float16 has an 11-bit significand: relative error <= 2**-11 for values in [0, 1)
    np.testing.assert_allclose(data.images, images, rtol=2**-11, atol=2**-24)
    assert not np.array_equal(data.images.astype(np.float32), images)
    pd.testing.assert_frame_equal(data.metadata, metadata)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_float32_store_is_exact(tmp_path: Path, images: np.ndarray, metadata: pd.DataFrame) -> None:
    data = open_store(write_store(XrayData(images, metadata), tmp_path / "s", dtype="float32"))
    np.testing.assert_array_equal(data.images, images)


def test_memmap_source_is_copied(tmp_path: Path, images: np.ndarray, metadata: pd.DataFrame) -> None:
    source = np.lib.format.open_memmap(tmp_path / "src.npy", mode="w+", dtype=np.float32, shape=images.shape)
    source[:] = images
    source.flush()
    source = np.load(tmp_path / "src.npy", mmap_mode="r")
    data = open_store(write_store(XrayData(source, metadata), tmp_path / "s", dtype="float32", chunk_size=16))
    np.testing.assert_array_equal(data.images, images)


def test_length_mismatch_rejected(images: np.ndarray, metadata: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="60 images but 59 metadata rows"):
        XrayData(images, metadata.iloc[:-1])


def test_replace_is_atomic_when_writing_fails(
    tmp_path: Path, images: np.ndarray, metadata: pd.DataFrame
) -> None:
    target = tmp_path / "store"
    write_store(XrayData(images, metadata), target)
    # pyarrow cannot write a column mixing ints and strings: failure after images.npy was written
    bad = metadata.assign(extra=[1, "a"] * (len(metadata) // 2))
    with pytest.raises(Exception, match="extra|Conversion|convert"):
        write_store(XrayData(np.zeros_like(images), bad), target)
    data = open_store(target)
    np.testing.assert_allclose(data.images, images, rtol=2**-11)
    assert "extra" not in data.metadata.columns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temp directory left behind


def test_replace_existing_store(tmp_path: Path, images: np.ndarray, metadata: pd.DataFrame) -> None:
    target = tmp_path / "store"
    write_store(XrayData(images, metadata), target)
    write_store(XrayData(images[:3] * 0 + 0.5, metadata.iloc[:3]), target)
    data = open_store(target)
    assert data.images.shape[0] == 3
    assert np.all(data.images == 0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_open_missing_files_names_path(tmp_path: Path, images: np.ndarray, metadata: pd.DataFrame) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere.*images\.npy"):
        open_store(tmp_path / "nowhere")
    store = write_store(XrayData(images, metadata), tmp_path / "store")
    (store / "metadata.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"metadata\.parquet"):
        open_store(store)


def test_open_corrupt_files_names_path(tmp_path: Path, images: np.ndarray, metadata: pd.DataFrame) -> None:
    store = write_store(XrayData(images, metadata), tmp_path / "store")
    (store / "metadata.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"metadata\.parquet"):
        open_store(store)
    (store / "images.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"images\.npy"):
        open_store(store)
