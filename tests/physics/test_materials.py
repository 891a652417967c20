"""Materials the models never saw: specifications, user-defined ones, and imaging them like the alloys."""

from __future__ import annotations

import numpy as np
import pytest

from alloy_mtl.physics.alloys import sample_composition, specimen_density
from alloy_mtl.physics.materials import (
    FAR_MATERIALS,
    MATERIAL_FAMILIES,
    NEAR_MATERIALS,
    OTHER_MATERIALS,
    material_from_params,
    material_spec,
)
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset


@pytest.mark.parametrize("name", list(OTHER_MATERIALS))
def test_sampled_compositions_sum_to_one_and_densities_stay_near_the_handbook(name):
    spec = OTHER_MATERIALS[name]
    rng = np.random.default_rng(0)
    for _ in range(50):
        composition = sample_composition(spec, rng, 1.0)
        assert sum(composition.values()) == pytest.approx(1.0)
        assert min(composition.values()) >= 0.0
        assert specimen_density(spec, composition) == pytest.approx(spec.density_g_cm3, rel=0.02)
    assert composition[spec.base] == max(composition.values())


def test_families_and_lookup_name_every_choice():
    assert set(MATERIAL_FAMILIES.values()) == {"near", "far"}
    assert all(spec.base == "Al" for spec in NEAR_MATERIALS.values())
    assert {spec.base for spec in FAR_MATERIALS.values()} == {"Mg", "Ti", "Fe", "C"}
    assert material_spec("7075").name == "7075" and material_spec("Ti-6Al-4V").base == "Ti"
    with pytest.raises(
        ValueError,
        match=r"unknown material 'Inconel'; expected one of the alloys 1050.* or another material 2024.*PMMA",
    ):
        material_spec("Inconel")


def test_a_users_material_is_checked_field_by_field_in_one_message():
    spec = material_from_params(
        "CuZn37", {"density_g_cm3": 8.44, "base": "Cu", "limits_wt_pct": {"Zn": [35, 38]}}
    )
    assert spec.nominal() == pytest.approx({"Zn": 0.365, "Cu": 0.635})
    with pytest.raises(ValueError) as error:
        material_from_params(
            "bad", {"density_g_cm3": -1, "limits_wt_pct": {"Zn": [5, 2], "Cu": "x"}, "colour": 1}
        )
    message = str(error.value)
    for part in (
        "material 'bad'",
        "unknown key(s) ['colour']",
        "density_g_cm3: expected a number > 0",
        "limits_wt_pct.Zn: expected 0 <= min <= max <= 100, got [5.0, 2.0]",
        "limits_wt_pct.Cu: expected [min, max]",
    ):
        assert part in message


def test_other_materials_are_imaged_by_the_same_instrument_with_their_own_attenuation():
    config = SimulationConfig(seed=1, image_size=8, dose=float("inf"))
    specs = [(material_spec(name), 4) for name in ("6082", "AZ31B", "Ti-6Al-4V", "PMMA")]
    images, metadata = simulate_dataset(config, materials=specs)
    assert metadata["alloy"].value_counts().to_dict() == {"6082": 4, "AZ31B": 4, "Ti-6Al-4V": 4, "PMMA": 4}
    mean = {
        name: float(images[(metadata["alloy"] == name).to_numpy()].mean())
        for name in metadata["alloy"].unique()
    }
    assert mean["Ti-6Al-4V"] < mean["6082"] < mean["AZ31B"] < mean["PMMA"]
    # the alloys' own path is unchanged: the same seed gives the same images with or without the keyword
    np.testing.assert_array_equal(simulate_dataset(config)[0], simulate_dataset(config, materials=None)[0])
    with pytest.raises(ValueError, match=r"materials: '6082' is given twice"):
        simulate_dataset(config, materials=[specs[0], specs[0]])
    with pytest.raises(ValueError, match=r"images >= 1"):
        simulate_dataset(config, materials=[(specs[0][0], 0)])
