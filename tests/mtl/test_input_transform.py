"""The input normaliser: standardised attenuation per channel, carried in the model's state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alloy_mtl.mtl.models.input_transform import InputNormalizer, output_channels, represent


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


def test_dual_energy_adds_thickness_free_log_ratios_of_every_channel_pair():
    mu = torch.tensor([0.9, 0.5, 0.2])  # attenuation per mm at three tube voltages
    thin, thick = (torch.exp(-mu[None, :, None, None] * t * torch.ones(1, 3, 2, 2)) for t in (1.0, 4.0))
    out_thin, out_thick = represent(thin, "dual_energy"), represent(thick, "dual_energy")
    assert out_thin.shape == (1, output_channels(3, "dual_energy"), 2, 2) == (1, 6, 2, 2)
    torch.testing.assert_close(out_thick[:, :3], 4.0 * out_thin[:, :3])  # attenuation scales with thickness
    torch.testing.assert_close(out_thick[:, 3:], out_thin[:, 3:])  # the ratios do not
    expected = torch.log(mu[[0, 0, 1]] / mu[[1, 2, 2]])
    torch.testing.assert_close(out_thin[0, 3:, 0, 0], expected)
    torch.testing.assert_close(
        represent(thick, "log_attenuation"), torch.log(4.0 * mu)[None, :, None, None].expand(1, 3, 2, 2)
    )


def test_dual_energy_normaliser_fits_and_widens_the_backbone_input():
    from alloy_mtl.mtl.models.multitask import build_model, load_model
    from alloy_mtl.mtl.tasks import parse_tasks

    rng = np.random.default_rng(1)
    images = rng.uniform(0.05, 0.95, size=(12, 3, 16, 16)).astype(np.float32)
    norm = InputNormalizer(3, "dual_energy").fit(images, np.arange(12), chunk_size=5)
    assert norm.mean.shape == (6,)
    out = norm(torch.from_numpy(images))
    np.testing.assert_allclose(out.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-4)
    tasks = {"alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5}}
    model = build_model("resnet18", 3, 16, parse_tasks(tasks), input_transform="dual_energy")
    assert model.backbone.conv1.in_channels == 6
    model.normalizer.load_state_dict(norm.state_dict())
    bundle = {
        "arch": "resnet18",
        "in_chans": 3,
        "image_size": 16,
        "model_options": {"input_transform": "dual_energy"},
        "tasks": tasks,
        "state_dict": model.state_dict(),
    }
    rebuilt = load_model(bundle)
    model.eval()
    torch.testing.assert_close(
        rebuilt(torch.from_numpy(images))["alloy"], model(torch.from_numpy(images))["alloy"]
    )


def test_wedge_profile_gradient_is_free_of_the_exposure_gain():
    columns = torch.linspace(0.5, 8.0, 16)  # thickness ramps along the image width
    mu = torch.tensor([0.3, 0.2])
    clean = torch.exp(-mu[None, :, None, None] * columns[None, None, None, :]).expand(1, 2, 8, 16)
    noisy = clean * (1 + 0.05 * torch.randn(1, 2, 8, 16, generator=torch.Generator().manual_seed(0)))
    out, brighter = represent(noisy, "wedge_profile"), represent(1.02 * noisy, "wedge_profile")
    assert out.shape == (1, output_channels(2, "wedge_profile"), 8, 16) == (1, 6, 8, 16)
    torch.testing.assert_close(out[:, :2], represent(noisy, "neg_log"))
    assert torch.equal(out[:, 2:, 0], out[:, 2:, 7])  # profile and gradient are the same on every row
    torch.testing.assert_close(brighter[:, 4:], out[:, 4:])  # a gain shifts A, not its slope
    assert not torch.allclose(brighter[:, 2:4], out[:, 2:4])
    slope = (columns[1] - columns[0]) * mu
    torch.testing.assert_close(out[0, 4:, 0].mean(dim=1), slope, rtol=0.05, atol=0)


def test_wedge_fit_recovers_the_wedge_and_averages_out_a_detector_pattern():
    columns = torch.linspace(0.5, 8.0, 16)
    mu = torch.tensor([0.3, 0.2])
    clean = torch.exp(-mu[None, :, None, None] * columns[None, None, None, :]).expand(1, 2, 8, 16).clone()
    out = represent(clean, "wedge_fit")
    assert out.shape == (1, output_channels(2, "wedge_fit"), 8, 16) == (1, 6, 8, 16)
    torch.testing.assert_close(out[:, :2], represent(clean, "neg_log"))
    torch.testing.assert_close(
        out[:, 2:4], represent(clean, "neg_log"), atol=1e-5, rtol=0
    )  # exact: linear in x
    slope = (columns[1] - columns[0]) * mu
    torch.testing.assert_close(out[0, 4:, 0], slope[:, None].expand(2, 16), atol=1e-5, rtol=0)
    # a detector's residual gain pattern and a dead pixel move the column profile's neighbour differences
    # far more than the fit's gradient
    pattern = 1 + 0.005 * torch.randn(1, 2, 8, 16, generator=torch.Generator().manual_seed(1))
    other = clean * pattern
    other[..., 3, 5] = 0.0
    fit_change = (represent(other, "wedge_fit")[:, 4:] - out[:, 4:]).abs().max()
    column_change = (
        (represent(other, "wedge_profile")[:, 4:] - represent(clean, "wedge_profile")[:, 4:]).abs().max()
    )
    assert fit_change < 0.1 * column_change


def test_wedge_fit_on_narrow_images_falls_back_to_lower_degrees():
    for width in (1, 2):
        out = represent(torch.full((1, 1, 4, width), 0.5), "wedge_fit")
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[:, 1], out[:, 0])  # the fit of a flat profile is the profile
        torch.testing.assert_close(out[:, 2], torch.zeros_like(out[:, 2]))  # with no slope
