"""The input normaliser: standardised attenuation per channel, carried in the model's state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alloy_mtl.mtl.input_transform import InputNormalizer


def test_fit_standardises_the_negative_log_of_the_training_rows_only():
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 0.9, size=(20, 2, 4, 4)).astype(np.float16)
    images[10:] = 0.01  # rows not in the training split must not move the statistics
    rows = np.arange(10)
    norm = InputNormalizer(2).fit(images, rows, chunk_size=3)
    attenuation = -np.log(images[:10].astype(np.float64))
    np.testing.assert_allclose(norm.mean.numpy(), attenuation.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(norm.std.numpy(), attenuation.std(axis=(0, 2, 3)), rtol=1e-4)
    out = norm(torch.from_numpy(images[:10].astype(np.float32)))
    np.testing.assert_allclose(out.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(dim=(0, 2, 3), unbiased=False).numpy(), 1.0, rtol=1e-3)


def test_statistics_travel_in_the_state_dict_and_bad_transform_is_named():
    norm = InputNormalizer(3).fit(np.full((4, 3, 2, 2), 0.5, dtype=np.float32), np.arange(4))
    clone = InputNormalizer(3)
    clone.load_state_dict(norm.state_dict())
    assert torch.equal(clone.mean, norm.mean)
    assert torch.equal(clone.std, torch.ones(3))  # zero spread is kept finite
    with pytest.raises(ValueError, match="input_transform: got 'sqrt'"):
        InputNormalizer(1, "sqrt")
