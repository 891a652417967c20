"""Wedge radiograph simulator: config, long-tail counts, determinism, labels, noise, memmap output."""

from __future__ import annotations

import numpy as np
import pytest

from alloy_mtl.constants import ALLOYS, METADATA_COLUMNS
from alloy_mtl.physics.simulator import (
    SimulationConfig,
    channel_weights,
    class_counts,
    plan_dataset,
    simulate_dataset,
)
from tests.physics.settings import DETECTOR_NOISE_FREE

SMALL = dict(n_images=60, image_size=16, imbalance_ratio=5.0, min_images_per_class=4)
NOISE_FREE = DETECTOR_NOISE_FREE


def test_class_counts_realise_ratio_and_order() -> None:
    order = ("6082", "5083", "1050", "7075", "2017")
    counts = class_counts(1000, 50.0, order)
    assert list(counts) == list(order)
    values = np.array(list(counts.values()))
    assert values.sum() == 1000
    assert np.all(np.diff(values) < 0)
    assert values[0] / values[-1] == pytest.approx(50.0, rel=0.05)
    # n_i = n_max * 50^(-i/4): the middle class is n_max / sqrt(50)
    assert values[2] == pytest.approx(values[0] / np.sqrt(50.0), abs=1.5)
    floored = class_counts(100, 100.0, order, minimum=8)
    assert min(floored.values()) == 8
    assert class_counts(10, 1.0, ALLOYS) == {a: 2 for a in ALLOYS}
    with pytest.raises(ValueError, match="imbalance_ratio"):
        class_counts(100, 0.5, order)


def test_from_params_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match=r"'photon_count'.*allowed:.*dose"):
        SimulationConfig.from_params({"photon_count": 10, "seed": 1})
    config = SimulationConfig.from_params({"kv": [60], "class_order": ["7075", "1050"]})
    assert config.kv == (60.0,) and config.class_order == ("7075", "1050")
    assert config.kv_label == "60"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"class_order": ["1050", "6061"]}, "6061"),
        ({"dose": 0}, "dose"),
        ({"wedge_thickness_mm": [5, 1]}, "wedge_thickness_mm"),
        ({"kv": []}, "kv"),
        ({"n_images": 2.5}, "n_images"),
    ],
)
def test_invalid_values_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SimulationConfig.from_params(params)


def test_same_seed_identical_different_seed_differs() -> None:
    images_a, meta_a = simulate_dataset(SimulationConfig(seed=3, **SMALL))
    images_b, meta_b = simulate_dataset(SimulationConfig(seed=3, **SMALL))
    images_c, _ = simulate_dataset(SimulationConfig(seed=4, **SMALL))
    assert images_a.dtype == np.float32
    np.testing.assert_array_equal(images_a, images_b)
    assert meta_a.equals(meta_b)
    assert not np.array_equal(images_a, images_c)


def test_metadata_contract() -> None:
    config = SimulationConfig(seed=1, images_per_specimen=3, **SMALL)
    images, meta = simulate_dataset(config)
    assert tuple(meta.columns)[: len(METADATA_COLUMNS)] == METADATA_COLUMNS
    assert images.shape == (len(meta), 3, 16, 16)
    assert meta["image_id"].is_unique and meta["image_id"].str.match(r"^gen-\d{6}$").all()
    assert set(meta["alloy"]) == set(ALLOYS)
    assert (meta["source"] == "generated").all() and (meta["path"] == "").all()
    assert (meta["kv"] == "40,50,80").all()
    assert (meta["thickness_mm"] > 0).all() and (meta["absorption"] > 0).all()
    per_specimen = meta.groupby("specimen_id")
    assert (per_specimen["alloy"].nunique() == 1).all()
    assert per_specimen.size().max() == 3 and (per_specimen.size() > 1).any()
    assert meta["alloy"].value_counts().to_dict() == class_counts(60, 5.0, config.class_order, 4)


def test_labels_match_thickness_map_and_absorption_definition() -> None:
    config = SimulationConfig(seed=2, **SMALL)
    plan = plan_dataset(config)
    for index in (0, 7, 31):
        thickness_map = plan.thickness_map(index)
        assert thickness_map.shape == (16, 16)
        assert plan.metadata["thickness_mm"].iloc[index] == pytest.approx(thickness_map.mean(), rel=1e-12)
        assert np.all(np.diff(thickness_map, axis=1) > 0) and np.all(np.diff(thickness_map, axis=0) == 0)
    reference = channel_weights(config, [50.0]).mean[0]
    t_cm = plan.metadata["thickness_mm"].to_numpy()[:5] / 10
    transmission = np.exp(-plan.mu[:5] * t_cm[:, None]) @ reference
    np.testing.assert_allclose(plan.metadata["absorption"].to_numpy()[:5], -np.log(transmission) / t_cm)


def test_noise_free_image_is_beer_lambert_through_thickness() -> None:
    config = SimulationConfig(seed=5, scatter_fraction=0.0, blur_sigma_px=0.0, **NOISE_FREE, **SMALL)
    plan = plan_dataset(config)
    images, _ = simulate_dataset(config)
    weights = channel_weights(config, config.kv)
    profile = plan.thickness_profiles(4, 5)[0] / 10.0  # cm, per column
    expected = np.exp(-profile[:, None] * plan.mu[4][None, :]) @ weights.mean.T  # (W, C)
    np.testing.assert_allclose(images[4, :, 0, :], expected.T, rtol=1e-5)
    assert np.all(images[4, 0, :, 1:] < images[4, 0, :, :-1])  # thicker to the right -> darker
    assert np.all(images[4, 0] < images[4, 2])  # 40 kV is absorbed more than 80 kV


def test_noise_scales_with_dose() -> None:
    quiet = dict(NOISE_FREE, blur_sigma_px=0.0, heel=0.0)

    def relative_std(dose: float) -> float:
        images, _ = simulate_dataset(SimulationConfig(seed=0, **{**quiet, "dose": dose}, **SMALL))
        columns = images[:, 1]  # each column of a wedge image is a flat region along the height
        return float(np.mean(columns.std(axis=1) / columns.mean(axis=1)))

    low, high = relative_std(1e3), relative_std(1e5)
    assert low / high == pytest.approx(10.0, rel=0.15)  # Poisson: relative noise ~ 1/sqrt(dose)
    assert 0.01 < low < 0.1


def test_dead_pixels_read_zero() -> None:
    images, _ = simulate_dataset(SimulationConfig(seed=0, dead_pixel_fraction=0.02, **SMALL))
    dead = np.all(images == 0.0, axis=(0, 1))
    assert dead.sum() == round(0.02 * 16 * 16)
    assert np.all(images[:, :, ~dead] > 0)


def test_memmap_output_matches_in_memory(tmp_path) -> None:
    config = SimulationConfig(seed=9, n_images=600, image_size=8, min_images_per_class=4)
    images, meta = simulate_dataset(config)
    out = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=images.shape)
    written, meta_mm = simulate_dataset(config, out=out)
    assert written is out
    out.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), images)
    assert meta_mm.equals(meta)
    with pytest.raises(ValueError, match="shape"):
        simulate_dataset(config, out=np.empty((3, 3, 8, 8), dtype=np.float32))


def test_single_channel() -> None:
    images, meta = simulate_dataset(SimulationConfig(seed=0, kv=[50], **SMALL))
    assert images.shape[1] == 1 and (meta["kv"] == "50").all()
    assert 0.0 <= images.min() and images.max() < 1.05


def test_a_detector_seed_keeps_the_fixed_pattern_across_datasets_of_new_specimens():
    from alloy_mtl.physics.simulator import plan_dataset

    first = plan_dataset(SimulationConfig(seed=1, n_images=40))
    same_detector = plan_dataset(SimulationConfig(seed=2, n_images=40, detector_seed=1))
    other_detector = plan_dataset(SimulationConfig(seed=2, n_images=40))
    np.testing.assert_array_equal(first.fixed_gain, same_detector.fixed_gain)
    np.testing.assert_array_equal(first.dead, same_detector.dead)
    assert not np.array_equal(first.fixed_gain, other_detector.fixed_gain)
    assert not np.array_equal(first.mu, same_detector.mu)  # new specimens
