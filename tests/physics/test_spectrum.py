"""Tungsten tube spectrum (Kramers + K lines + filtration) and detector weights."""

from __future__ import annotations

import numpy as np
import pytest

from alloy_mtl.physics.spectrum import detector_response, energy_grid, kramers_spectrum, tube_spectrum


def test_kramers_zero_above_kv_positive_below() -> None:
    energies = energy_grid(100.0, 0.5)
    spectrum = kramers_spectrum(50.0, energies)
    assert np.all(spectrum[energies - 0.25 >= 50.0] == 0.0)
    assert np.all(spectrum[energies + 0.25 <= 50.0] > 0.0)
    # Kramers photon spectrum Z (E0 - E) / E falls with energy
    below = spectrum[energies < 49.0]
    assert np.all(np.diff(below) < 0)


def test_kramers_bin_integral_hand_computed() -> None:
    # a single bin [9.5, 10.5] at 20 kV: Z * (E0 ln(b/a) - (b - a))
    value = kramers_spectrum(20.0, np.array([10.0]))[0]
    assert value == pytest.approx(74 * (20.0 * np.log(10.5 / 9.5) - 1.0), rel=1e-9)


def test_tube_spectrum_normalised_and_filtered() -> None:
    energies = energy_grid(80.0, 0.5)
    spectrum = tube_spectrum(50.0, energies)
    assert spectrum.photons.sum() == pytest.approx(1.0)
    assert np.all(spectrum.photons[energies > 50.0] == 0.0)
    # the Be window and Al filter remove the soft end of the spectrum
    assert spectrum.photons[energies < 8.0].sum() < 1e-4
    thicker = tube_spectrum(50.0, energies, al_filter_mm=3.0)
    mean_energy = (spectrum.photons * energies).sum()
    assert (thicker.photons * energies).sum() > mean_energy + 1.0  # beam hardening by the filter


def test_k_lines_only_above_k_edge() -> None:
    energies = energy_grid(90.0, 0.5)
    ka1 = np.argmin(np.abs(energies - 59.3))
    at_80 = tube_spectrum(80.0, energies).photons
    at_60 = tube_spectrum(60.0, energies).photons
    assert at_80[ka1] > 3 * at_80[ka1 - 4]
    no_lines = tube_spectrum(80.0, energies, characteristic=False).photons
    assert no_lines[ka1] < 1.2 * no_lines[ka1 - 4]
    assert at_60[ka1] < at_60[ka1 - 4]


def test_detector_weights_energy_integrating() -> None:
    energies = np.array([20.0, 40.0, 60.0])
    response = detector_response(energies)
    np.testing.assert_allclose(response.var_weight, response.mean_weight * energies)
    eta = response.mean_weight / energies
    assert np.all((eta > 0) & (eta <= 1))
    with pytest.raises(ValueError, match="scintillator"):
        detector_response(energies, scintillator_mm=0)
