"""The composition descriptors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alloy_mtl.properties.features import composition_features


def test_binary_means_and_spreads_by_hand() -> None:
    # Cu r=128 pm, Ni r=124 pm (metallic radius CN12, mendeleev): 50/50 -> mean 126, spread 2
    frame = pd.DataFrame({"Cu": [50.0, 100.0], "Ni": [50.0, 0.0]})
    features = composition_features(frame)
    assert features.loc[0, "mean_radius"] == pytest.approx(126.0)
    assert features.loc[0, "spread_radius"] == pytest.approx(2.0)
    assert features.loc[1, "spread_radius"] == pytest.approx(0.0)
    assert features["n_components"].tolist() == [2.0, 1.0]
    assert features["max_fraction"].tolist() == [0.5, 1.0]


def test_percent_and_fraction_give_the_same_descriptors() -> None:
    percent = pd.DataFrame({"Zr": [60.0], "Cu": [30.0], "Al": [10.0]})
    fraction = percent / 100.0
    pd.testing.assert_frame_equal(composition_features(percent), composition_features(fraction))
    assert np.isfinite(composition_features(percent).to_numpy()).all()


def test_unknown_element_and_empty_row_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown element column"):
        composition_features(pd.DataFrame({"Xx": [1.0]}))
    with pytest.raises(ValueError, match="empty"):
        composition_features(pd.DataFrame({"Cu": [0.0]}))
