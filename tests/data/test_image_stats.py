"""Per-image statistics, chunked over a memmap, against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alloy_mtl.data.image_stats import image_statistics


def test_hand_computed_values() -> None:
    images = np.zeros((3, 1, 2, 2), dtype=np.float32)
    images[0, 0] = [[0.0, 1.0], [2.0, 3.0]]
    images[1, 0] = [[1.0, np.nan], [np.inf, 3.0]]
    images[2, 0] = np.nan
    stats = image_statistics(images, chunk_size=2)
    assert stats["mean"].iloc[0] == 1.5
    assert stats["std"].iloc[0] == pytest.approx(np.sqrt(1.25))
    assert (stats["min"].iloc[0], stats["max"].iloc[0]) == (0.0, 3.0)
    assert stats["n_nonfinite"].tolist() == [0, 2, 4]
    assert (stats["mean"].iloc[1], stats["min"].iloc[1], stats["max"].iloc[1]) == (2.0, 1.0, 3.0)
    assert stats.iloc[2][["mean", "std", "min", "max"]].isna().all()
    assert stats["shape"].tolist() == ["1x2x2"] * 3


def test_chunking_and_memmap_match_in_memory(tmp_path: Path) -> None:
    images = np.random.default_rng(1).random((23, 3, 4, 4)).astype(np.float16)
    np.save(tmp_path / "x.npy", images)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = image_statistics(mapped, chunk_size=5)
    b = image_statistics(images, chunk_size=100)
    np.testing.assert_allclose(a[["mean", "std", "min", "max"]], b[["mean", "std", "min", "max"]])
    np.testing.assert_allclose(a["mean"], images.astype(np.float64).reshape(23, -1).mean(axis=1))


def test_sequence_of_differently_shaped_images() -> None:
    stats = image_statistics([np.ones((1, 2, 2)), np.zeros((1, 3, 2))])
    assert stats["shape"].tolist() == ["1x2x2", "1x3x2"]
    assert stats["mean"].tolist() == [1.0, 0.0]


def test_rejects_non_4d() -> None:
    with pytest.raises(ValueError, match=r"N x C x H x W.*\(2, 2\)"):
        image_statistics(np.zeros((2, 2)))
