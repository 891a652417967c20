"""The mixed option: a lab's labelled images trained together with the simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.config import ParameterError, parse_params
from alloy_mtl.data.errors import DataValidationError
from alloy_mtl.data.lab_mix import mix_lab_images
from alloy_mtl.data.params import DataSourceParams
from alloy_mtl.data.split import assign_split
from alloy_mtl.data.store import XrayData
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

CONFIG = SimulationConfig(seed=2, n_images=200, image_size=8, min_images_per_class=18, images_per_specimen=3)


def _generated() -> XrayData:
    images, metadata = simulate_dataset(CONFIG)
    return XrayData(images, metadata)


def _lab(n: int = 10, size: int = 16, channels: int = 3) -> XrayData:
    metadata = pd.DataFrame(
        {
            "image_id": [f"lab-{i}" for i in range(n)],
            "specimen_id": [f"L{i // 2}" for i in range(n)],
            "alloy": ["7075", "2017"] * (n // 2),
            "thickness_mm": 3.0,
            "absorption": 2.0,
            "kv": "40/50/80",
            "source": "ingested",
            "path": [f"{i}.png" for i in range(n)],
            "given_split": "test",
        }
    )
    images = (
        np.full((n, channels, size, size), 0.5, np.float32)
        + np.arange(n, dtype=np.float32)[:, None, None, None] / 100
    )
    return XrayData(images, metadata)


def test_lab_images_are_resized_repeated_to_their_share_recorded_at_the_nominal_instrument_and_all_train():
    generated = _generated()
    mixed = mix_lab_images(generated, _lab(), CONFIG, share=0.2, where="/lab/labelled")
    n_gen = len(generated)
    repeat = round(0.2 * n_gen / 10)
    assert len(mixed) == n_gen + 10 * repeat and mixed.images.shape[1:] == (3, 8, 8)
    np.testing.assert_array_equal(mixed.images[:n_gen], generated.images)
    # a flat image stays flat when resized
    np.testing.assert_allclose(mixed.images[n_gen + 3], 0.53, rtol=1e-5)
    lab = mixed.metadata.iloc[n_gen:]
    assert mixed.metadata["image_id"].is_unique and set(lab["image_id"][:2]) == {"lab-0", "lab-1"}
    assert lab["image_id"].iloc[10] == "lab-0~1" and (lab["instrument_kv_scale"] == 1.0).all()
    assert (lab["instrument_al_filter_mm"] == CONFIG.al_filter_mm).all() and "given_split" not in lab.columns
    labels, used = assign_split(mixed.metadata, "auto", seed=1)
    assert used == "grouped" and (labels.iloc[n_gen:] == "train").all()
    assert set(labels.iloc[:n_gen]) == {"train", "val", "test"} and labels.index.equals(mixed.metadata.index)


def test_lab_images_the_simulation_cannot_take_are_refused_naming_the_folder_and_every_problem():
    with pytest.raises(DataValidationError) as err:
        mix_lab_images(_generated(), _lab(size=4, channels=1), CONFIG, share=0.2, where="/lab/labelled")
    message = str(err.value)
    assert message.startswith("/lab/labelled:") and "1 channel(s)" in message and "at least 8x8" in message


def test_lab_images_only_mix_into_generated_data():
    with pytest.raises(ParameterError, match="lab_images: mixes a lab folder into generated data"):
        parse_params(
            DataSourceParams,
            {"kind": "csv_folder", "path": "/x", "lab_images": {"path": "/y"}},
            "data_source",
        )
    with pytest.raises(ParameterError, match=r"data_source.lab_images.share"):
        parse_params(DataSourceParams, {"lab_images": {"path": "/y", "share": 1.5}}, "data_source")
