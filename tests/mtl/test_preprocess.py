"""Bad-pixel correction before the resize: found in each image, the same in every path a model meets images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alloy_mtl.mtl.loading.preprocess import (
    bad_pixel_mask,
    bundle_bad_pixels,
    correct_bad_pixels,
    prepare_images,
)
from alloy_mtl.mtl.loading.resize import resize_images
from alloy_mtl.physics.simulator import SimulationConfig, plan_dataset, simulate_dataset


def _wedge(n: int = 2, size: int = 16) -> torch.Tensor:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.9, 0.3, size)[None, None, None, :] * np.ones((n, 3, size, 1))
    return torch.from_numpy((ramp * (1 + 0.01 * rng.standard_normal((n, 3, size, size)))).astype(np.float32))


def test_dead_hot_and_nan_pixels_are_found_and_replaced_by_their_neighbours() -> None:
    images = _wedge()
    clean = images.clone()
    images[0, :, 4, 5] = 0.0  # dead in every channel
    images[1, 1, 9, 9] = 5.0  # hot in one channel
    images[1, 2, 0, 0] = float("nan")  # a corner
    mask = bad_pixel_mask(images)
    assert mask[0, :, 4, 5].all() and mask[1, 1, 9, 9] and mask[1, 2, 0, 0]
    assert int(mask.sum()) == 5  # and nothing else: noise and the wedge are not defects
    corrected = correct_bad_pixels(images)
    assert torch.isfinite(corrected).all()
    np.testing.assert_allclose(corrected[mask], clean[mask], rtol=0.05)
    assert torch.equal(corrected[~mask], images[~mask])


def test_correction_is_applied_before_the_resize() -> None:
    images = _wedge(size=32)
    images[:, :, 10, 10] = 0.0
    prepared = prepare_images(images, 16, "neighbour_median")
    naive = resize_images(images, 16)
    reference = resize_images(_wedge(size=32), 16)
    assert (prepared - reference).abs().max() < 0.02
    assert (naive - reference).abs().max() > 0.05  # a dead pixel left in drags its resized neighbourhood


def test_none_leaves_images_as_they_are_and_unknown_methods_are_named() -> None:
    images = _wedge()
    images[0, 0, 3, 3] = 0.0
    assert torch.equal(prepare_images(images, None, "none"), images)
    with pytest.raises(ValueError, match="bad_pixels: got 'median'"):
        prepare_images(images, None, "median")


def test_a_bundle_without_preprocessing_was_trained_without_correction() -> None:
    assert bundle_bad_pixels({"arch": "fnn"}) == "none"
    assert bundle_bad_pixels({"preprocessing": {"bad_pixels": "neighbour_median"}}) == "neighbour_median"


def test_simulated_dead_pixels_of_any_detector_unit_are_all_found() -> None:
    for detector_seed in (1, 910_001):
        config = SimulationConfig(seed=2, detector_seed=detector_seed, n_images=40, dead_pixel_fraction=0.01)
        images, _ = simulate_dataset(config)
        dead = plan_dataset(config).dead
        mask = bad_pixel_mask(torch.from_numpy(images))
        assert mask[:, :, dead].all()
        assert mask[:, :, ~dead].float().mean() < 1e-3


def test_dataset_prepares_each_row_once_and_hands_out_copies(monkeypatch):
    from alloy_mtl.mtl.loading import datasets

    rng = np.random.default_rng(0)
    images = rng.uniform(0.5, 1.0, (4, 2, 8, 8)).astype(np.float32)
    images[1, 0, 3, 3] = 0.0  # a dead pixel
    targets = {"alloy": np.arange(4) % 2}
    calls = []
    real = datasets.prepare_images

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "prepare_images", counting)
    cached = datasets.ArrayTaskDataset(images, targets, image_size=4, bad_pixels="neighbour_median")
    first = cached[1][0]
    first.fill_(-1.0)  # a caller changing its item must not change the next epoch's
    again = cached[1][0]
    assert len(calls) == 1
    assert float(again.min()) > 0
    monkeypatch.setattr(datasets, "PREPARED_CACHE_BYTES", 0)
    uncached = datasets.ArrayTaskDataset(images, targets, image_size=4, bad_pixels="neighbour_median")
    assert torch.equal(uncached[1][0], again)
    uncached[1]
    assert len(calls) == 3
