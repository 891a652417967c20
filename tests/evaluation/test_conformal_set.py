"""Where a model's conformal sets are fitted (``training.conformal_set``): a generated, balanced set at the
simulation's instrument by default with generated data, the validation split otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from alloy_mtl.config import ParameterError
from alloy_mtl.constants import ALLOYS, INSTRUMENT_COLUMN_PREFIX
from alloy_mtl.evaluation.conformal_set import conformal_set
from alloy_mtl.evaluation.evaluation_set import CONFORMAL_UNITS, conformal_set_config
from alloy_mtl.evaluation.params import VALIDATION_DETECTOR_SEEDS
from alloy_mtl.mtl.params import parse_training_params

GENERATION = {"image_size": 16, "seed": 5}
SHAPE = (10, 3, 16, 16)
TASKS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5},
    "thickness": {"kind": "regression", "target": "thickness_mm"},
}


def _params(**changes):
    return parse_training_params({"arch": "fnn", "conformal_images": 200, "tasks": TASKS, **changes})


def _settings(metadata):
    return metadata[[c for c in metadata.columns if c.startswith(INSTRUMENT_COLUMN_PREFIX)]]


def test_auto_with_generated_data_simulates_a_balanced_set_of_other_units_at_the_nominal_instrument():
    params, simulate = conformal_set(_params(), "generated", GENERATION, SHAPE)
    images, metadata = simulate()
    assert params.conformal_set == "generated"
    assert images.shape == (200, 3, 16, 16)
    counts = metadata["alloy"].astype(str).value_counts()
    assert set(counts.index) == set(ALLOYS) and counts.max() - counts.min() <= 3  # balanced: the tail too
    assert (_settings(metadata).nunique() == 1).all()  # one instrument, the generation's
    assert metadata["specimen_id"].str.startswith("conf-").all()
    config = conformal_set_config(GENERATION, 200)
    assert config.instruments == CONFORMAL_UNITS and config.detector_seed in VALIDATION_DETECTOR_SEEDS


def test_generated_tolerances_draws_the_settings_inside_the_declared_tolerances():
    generation = {**GENERATION, "tolerances": {"kv_scale": [0.98, 1.02]}}
    params, simulate = conformal_set(
        _params(conformal_set="generated_tolerances"), "generated", generation, SHAPE
    )
    _, metadata = simulate()
    kv = metadata["instrument_kv_scale"]
    assert params.conformal_set == "generated_tolerances"
    assert kv.nunique() > 1 and kv.between(0.98, 1.02).all()


def test_lab_data_and_an_explicit_choice_keep_the_validation_split():
    params, data = conformal_set(_params(), "csv_folder", GENERATION, SHAPE)
    assert data is None and params.conformal_set == "validation_split"
    params, data = conformal_set(_params(conformal_set="validation_split"), "generated", GENERATION, SHAPE)
    assert data is None and params.conformal_set == "validation_split"


def test_a_simulation_unlike_the_training_images_falls_back_under_auto_and_fails_when_named():
    params, data = conformal_set(_params(), "generated", GENERATION, (10, 1, 16, 16))
    assert data is None and params.conformal_set == "validation_split"
    density = {**TASKS, "density": {"kind": "regression", "target": "density_g_cm3"}}
    with pytest.raises(ValueError) as err:
        conformal_set(
            _params(conformal_set="generated", tasks=density), "generated", GENERATION, (10, 1, 16, 16)
        )
    message = str(err.value)
    assert "training.conformal_set: generated" in message
    assert "3 channels" in message and "have 1" in message and "'density_g_cm3'" in message  # both named


def test_the_set_is_the_same_for_the_same_seed():
    first, _ = conformal_set(_params(), "generated", GENERATION, SHAPE)[1]()
    again, _ = conformal_set(_params(), "generated", GENERATION, SHAPE)[1]()
    np.testing.assert_array_equal(first, again)


def test_bad_conformal_settings_are_named_together():
    with pytest.raises(ParameterError) as err:
        _params(conformal_set="test_split", conformal_images=10)
    message = str(err.value)
    assert "training.conformal_set" in message and "test_split" in message
    assert "training.conformal_images" in message and "100" in message
