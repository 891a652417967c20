"""Label distribution smoothing (weights) and feature distribution smoothing (FDS)."""

import math

import numpy as np
import pytest
import torch

from alloy_mtl.mtl.losses.fds import FDS, FDSCallback
from alloy_mtl.mtl.losses.lds import (
    bin_index,
    kernel_window,
    label_bin_edges,
    lds_weights,
    smoothed_density,
)
from alloy_mtl.mtl.tasks import FDSConfig, LDSConfig


def test_kernel_windows_by_hand() -> None:
    e = math.exp(-0.5)
    assert np.allclose(kernel_window("gaussian", 3, 1.0), [e, 1.0, e])
    assert np.allclose(kernel_window("laplace", 5, 2.0), np.exp(-np.array([2, 1, 0, 1, 2]) / 2.0))
    assert np.allclose(kernel_window("triang", 3, 1.0), [0.5, 1.0, 0.5])
    with pytest.raises(ValueError, match="kernel_size"):
        kernel_window("gaussian", 4, 1.0)
    with pytest.raises(ValueError, match="kernel"):
        kernel_window("box", 3, 1.0)


def test_smoothed_density_by_hand() -> None:
    e = math.exp(-0.5)
    density = smoothed_density(np.array([3, 1, 0]), kernel_window("gaussian", 3, 1.0))
    assert np.allclose(density, [3 + e, 3 * e + 1, e])


def test_bins_and_lookup() -> None:
    edges = label_bin_edges(np.array([0.0, np.nan, 1.0, 0.25]), 4)
    assert np.allclose(edges, [0, 0.25, 0.5, 0.75, 1.0])
    assert bin_index(np.array([-5.0, 0.0, 0.25, 0.6, 1.0, 7.0]), edges).tolist() == [0, 0, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="no finite label"):
        label_bin_edges(np.array([np.nan]), 3)


def test_inverse_weights_by_hand_without_smoothing() -> None:
    # Two bins, counts 3 and 1; kernel of size 1 leaves the histogram as is.
    w = lds_weights(np.array([0.0, 0.1, 0.2, 1.0, np.nan]), LDSConfig(bins=2, kernel_size=1, reweight="inv"))
    # 1/3 and 1, rescaled so the 4 train samples have mean weight 1: scale 4 / (3 * 1/3 + 1) = 2.
    assert np.allclose(w.bin_weights, [2 / 3, 2.0])
    assert np.allclose(w(np.array([0.0, 1.0])), [2 / 3, 2.0])


def _long_tailed_labels() -> np.ndarray:
    return np.random.default_rng(0).exponential(1.0, size=2000)


@pytest.mark.parametrize("reweight", ["inv", "sqrt_inv"])
def test_rare_bins_weigh_more_and_mean_is_one(reweight: str) -> None:
    labels = _long_tailed_labels()
    w = lds_weights(
        labels, LDSConfig(bins=20, kernel="gaussian", kernel_size=5, sigma=2.0, reweight=reweight)
    )
    per_sample = w(labels)
    assert per_sample.mean() == pytest.approx(1.0, abs=1e-12)
    density = smoothed_density(
        np.bincount(bin_index(labels, w.edges), minlength=20), kernel_window("gaussian", 5, 2.0)
    )
    # Weight is a strictly decreasing function of the smoothed density: the rarest bin weighs most.
    order = np.argsort(density)
    assert np.all(np.diff(w.bin_weights[order]) < 0)
    assert w(np.array([labels.max()]))[0] > 5 * w(np.array([labels.min()]))[0]


def test_sqrt_inv_is_sqrt_of_inv_up_to_scale() -> None:
    labels = _long_tailed_labels()
    inv = lds_weights(labels, LDSConfig(bins=20, reweight="inv")).bin_weights
    sqrt_inv = lds_weights(labels, LDSConfig(bins=20, reweight="sqrt_inv")).bin_weights
    ratio = sqrt_inv / np.sqrt(inv)
    assert np.allclose(ratio, ratio[0])


def test_smoothing_spreads_density_to_empty_neighbours() -> None:
    # A gap bin between two populated bins gets a finite weight from the smoothed density.
    labels = np.array([0.0] * 5 + [1.0] * 5)
    w = lds_weights(labels, LDSConfig(bins=3, kernel_size=3, sigma=1.0, reweight="inv"))
    e = math.exp(-0.5)
    density = np.array([5, 10 * e, 5])
    expected = (1 / density) * 10 / (10 / 5)
    assert np.allclose(w.bin_weights, expected)


def _fds(bins: int = 3, kernel_size: int = 1, **kwargs) -> FDS:
    return FDS(2, np.linspace(0.0, float(bins), bins + 1), FDSConfig(kernel_size=kernel_size, **kwargs))


def test_fds_statistics_are_per_bin_mean_and_population_variance() -> None:
    fds = _fds()
    labels = torch.tensor([0.5, 0.5, 0.5, 1.5, 1.5, 2.5, float("nan")])
    features = torch.tensor(
        [[0.0, 1.0], [2.0, 1.0], [4.0, 4.0], [1.0, 1.0], [3.0, 3.0], [7.0, 7.0], [100.0, 100.0]]
    )
    # Two batches accumulate to the same statistics as one (Chan's update).
    fds.update_statistics(features[:2], labels[:2])
    fds.update_statistics(features[2:], labels[2:])
    fds.smooth()
    assert torch.allclose(fds.running_mean, torch.tensor([[2.0, 2.0], [2.0, 2.0], [7.0, 7.0]]))
    assert torch.allclose(fds.running_var[0], torch.tensor([8 / 3, 2.0]))
    assert torch.allclose(fds.running_var[1], torch.tensor([1.0, 1.0]))
    assert float(fds.acc_count.sum()) == 0.0  # accumulators reset
    # Kernel of size 1: smoothed == running, calibration is the identity.
    assert torch.allclose(fds.calibrate(features[:6], labels[:6]), features[:6])


def test_fds_momentum_and_unseen_bins() -> None:
    fds = _fds(momentum=0.9)
    fds.update_statistics(torch.tensor([[1.0, 1.0]]), torch.tensor([0.5]))
    fds.smooth()
    fds.update_statistics(torch.tensor([[11.0, 11.0]]), torch.tensor([0.5]))
    fds.smooth()
    assert torch.allclose(fds.running_mean[0], torch.tensor([0.9 * 1 + 0.1 * 11] * 2))
    assert fds.seen.tolist() == [True, False, False]
    x = torch.tensor([[5.0, 5.0]])
    assert torch.equal(fds.calibrate(x, torch.tensor([2.5])), x)  # bin without statistics: unchanged


def test_fds_smoothing_across_bins_by_hand() -> None:
    fds = _fds(kernel_size=3, sigma=1.0, clip_min=0.01, clip_max=100.0)
    labels = torch.tensor([0.5, 0.5, 1.5, 1.5, 2.5, 2.5])
    features = torch.tensor([[-1.0], [1.0], [1.0], [3.0], [2.0], [6.0]]).repeat(1, 2)
    fds.update_statistics(features, labels)
    fds.smooth()
    e = math.exp(-0.5)
    means, variances = np.array([0.0, 2.0, 4.0]), np.array([1.0, 1.0, 4.0])
    expected_mean = (e * means[0] + means[1] + e * means[2]) / (1 + 2 * e)
    expected_var = (e * variances[0] + variances[1] + e * variances[2]) / (1 + 2 * e)
    assert fds.smoothed_mean[1, 0].item() == pytest.approx(expected_mean, rel=1e-6)
    assert fds.smoothed_var[1, 0].item() == pytest.approx(expected_var, rel=1e-6)
    # Edge bin: only existing neighbours count.
    assert fds.smoothed_mean[0, 0].item() == pytest.approx((means[0] + e * means[1]) / (1 + e), rel=1e-6)
    out = fds.calibrate(torch.tensor([[3.0, 3.0]]), torch.tensor([1.5]))
    expected = (3.0 - 2.0) * math.sqrt(expected_var / 1.0) + expected_mean
    assert out[0, 0].item() == pytest.approx(expected, rel=1e-6)


def test_fds_forward_schedule_gradient_and_callback() -> None:
    fds = _fds(kernel_size=3, start_epoch=2)
    labels = torch.tensor([0.5, 1.5, 2.5, 0.7])
    features = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    fds.train()
    assert fds(features, labels, epoch=0) is features  # tracked only
    assert float(fds.acc_count.sum()) == 4.0
    FDSCallback(torch.nn.ModuleDict({"t": fds})).on_epoch_end(None, 0, {})
    assert bool(fds.ready)
    assert fds(features, labels, epoch=1) is features  # before start_epoch
    out = fds(features, labels, epoch=2)
    assert not torch.allclose(out, features)
    out.sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    fds.eval()
    assert fds(features, labels, epoch=5) is features


def test_fds_state_round_trips() -> None:
    fds = _fds(kernel_size=3)
    fds.update_statistics(torch.ones(3, 2), torch.tensor([0.5, 1.5, 2.5]))
    fds.smooth()
    other = _fds(kernel_size=3)
    other.load_state_dict(fds.state_dict())
    assert bool(other.ready) and torch.equal(other.running_mean, fds.running_mean)
