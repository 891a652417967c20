"""The physics unknown-designation score: its parameters, its fit, its threshold and where it does not apply."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from alloy_mtl.config import ParameterError, parse_params
from alloy_mtl.evaluation.evaluation_set import evaluation_set_config
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.evaluation.physics_unknown import (
    EXPOSURE_DESIGNATIONS,
    UnknownMaterialsParams,
    batch_slices,
    fit_physics_unknown,
)
from alloy_mtl.parameters import check_parameters
from alloy_mtl.physics.materials import NEAR_MATERIALS, material_from_params
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset
from tests.evaluation.helpers import PHYSICS_GENERATION, PHYSICS_TINY

GENERATION, TINY = PHYSICS_GENERATION, PHYSICS_TINY
#: far from the five alloys and from the exposure table: copper-rich like no known alloy
HIGH_COPPER = {
    "density_g_cm3": 2.84,
    "limits_wt_pct": {"Cu": [5.8, 6.8], "Mn": [0.2, 0.4], "Zr": [0.1, 0.25]},
}


@pytest.fixture(scope="module")
def fitted():
    return fit_physics_unknown(GENERATION, UnknownMaterialsParams(**TINY))


def _known_and(material: dict, n: int = 100):
    config = evaluation_set_config(GENERATION, EvaluationSetParams(n_images=n))
    known, _ = simulate_dataset(config)
    other, _ = simulate_dataset(
        dataclasses.replace(config, seed=config.seed + 1),
        materials=[(material_from_params("x", material), n)],
    )
    return known, other


def test_the_exposure_table_names_none_of_the_five_alloys_nor_the_evaluations_unknown_designations():
    assert not set(EXPOSURE_DESIGNATIONS) & ({"1050", "2017", "5083", "6082", "7075"} | set(NEAR_MATERIALS))


def test_bad_exposure_designations_are_named_together():
    with pytest.raises(ParameterError) as error:
        parse_params(
            UnknownMaterialsParams,
            {"exposure": {"7075": EXPOSURE_DESIGNATIONS["2014"], "9999": {"density_g_cm3": -1}}},
            "unknown_materials",
        )
    message = str(error.value)
    assert "'7075' is one of the five alloys" in message and "material '9999'" in message
    assert "density_g_cm3" in message
    with pytest.raises(ParameterError, match=r"unknown_materials.known_images"):
        check_parameters({"unknown_materials": {"known_images": 5}})


def test_sessions_too_many_for_the_images_are_refused_naming_both_counts():
    with pytest.raises(ParameterError) as error:
        check_parameters(
            {
                "unknown_materials": {
                    "known_images": 100,
                    "images_per_designation": 12,
                    "instrument_sessions": 8,
                }
            }
        )
    message = str(error.value)
    assert "known_images: 100 in 8 instrument_sessions" in message and "at least 120" in message
    assert "images_per_designation: 12 in 8 instrument_sessions" not in message
    with pytest.raises(ParameterError) as error:
        check_parameters(
            {
                "unknown_materials": {
                    "known_images": 100,
                    "images_per_designation": 12,
                    "instrument_sessions": 16,
                }
            }
        )
    assert "at least 240" in str(error.value) and "images_per_designation: 12 in 16" in str(error.value)
    # enough for every session, and the nominal fit (no sessions) with the least of both
    check_parameters({"unknown_materials": {"known_images": 120, "images_per_designation": 10}})
    check_parameters(
        {"unknown_materials": {"known_images": 100, "images_per_designation": 10, "instrument_sessions": 0}}
    )


def test_a_remainder_under_half_a_batch_joins_the_batch_before():
    assert batch_slices(120, 50) == [slice(0, 50), slice(50, 120)]
    assert batch_slices(130, 100) == [slice(0, 130)]
    assert batch_slices(140, 50) == [slice(0, 50), slice(50, 100), slice(100, 140)]
    assert batch_slices(30, 50) == [slice(0, 30)]


def test_known_images_score_low_and_a_designation_never_shown_scores_high(fitted):
    known, other = _known_and(HIGH_COPPER)
    config = SimulationConfig.from_params(GENERATION)
    known_scores, other_scores = fitted.score(config, known), fitted.score(config, other)
    threshold = fitted.threshold(0.05)
    assert (known_scores > threshold).mean() <= 0.15
    assert (other_scores > threshold).mean() >= 0.6  # 16 px, 200 known images: a weak fit, most still flagged
    assert np.median(other_scores) > np.quantile(known_scores, 0.95)


def test_the_threshold_rejects_the_stated_share_of_the_reference_and_rises_as_the_rate_falls(fitted):
    rates = [0.5, 0.1, 0.05, 0.01, 0.0]
    thresholds = [fitted.threshold(rate) for rate in rates]
    assert thresholds == sorted(thresholds)
    assert thresholds[0] < thresholds[-1]
    with pytest.raises(ValueError, match=r"reject_rate: expected a fraction in \[0, 1\), got 1.5"):
        fitted.threshold(1.5)
    summary = fitted.summary()
    assert summary["n_known"] == 200 and summary["n_exposure"] == 200 and summary["image_size"] == 16
    # the fit's sessions are on record: 8 known-and-exposure instruments, then one per reference batch
    roles = [session["role"] for session in summary["sessions"]]
    assert roles == ["known and exposure"] * 8 + ["reference"] * 4
    assert sum(s["n_images"] for s in summary["sessions"] if s["role"] == "reference") == 200


def test_the_score_refuses_images_of_another_beam_or_size_naming_both(fitted):
    other = dataclasses.replace(SimulationConfig.from_params(GENERATION), image_size=32, kv=(40.0, 80.0))
    assert "fitted at 16 px" in fitted.mismatch(other) and "(40.0, 80.0) kV" in fitted.mismatch(other)
    with pytest.raises(ValueError, match=r"physics unknown score: fitted for .* kV.*fitted at 16 px"):
        fitted.score(other, np.ones((2, 2, 32, 32), np.float32))


def test_a_score_fitted_for_another_instrument_declaration_is_refused_naming_what_changed(fitted):
    declared = SimulationConfig.from_params(GENERATION)
    assert fitted.mismatch(declared) is None
    calibrated = dataclasses.replace(
        declared, al_filter_mm=declared.al_filter_mm + 0.2, dose=declared.dose * 2
    )
    message = fitted.mismatch(calibrated)
    assert f"fitted for al_filter_mm {declared.al_filter_mm}, the images' instrument has" in message
    assert "fitted for dose" in message and "kedro run --pipeline unknown_materials" in message
    assert "kV" not in message and "px" not in message
    toleranced = SimulationConfig.from_params({**GENERATION, "tolerances": {"al_filter_mm": [0.8, 1.2]}})
    assert "fitted for tolerances {}" in fitted.mismatch(toleranced)
    old = dataclasses.replace(fitted, instrument=None)  # pickled before the instrument was recorded
    assert old.mismatch(calibrated) is None


def test_the_same_seed_fits_the_same_score():
    params = UnknownMaterialsParams(**TINY)
    first, second = fit_physics_unknown(GENERATION, params), fit_physics_unknown(GENERATION, params)
    np.testing.assert_array_equal(first.reference, second.reference)


def test_p_values_beyond_every_reference_score_keep_falling_so_any_threshold_is_reachable():
    from alloy_mtl.evaluation.physics_unknown import _log_p_values

    reference = np.sort(np.random.default_rng(0).exponential(size=100))
    log_p = _log_p_values(
        reference, np.array([reference[50], reference[-1] + 1.0, reference[-1] + 10.0, np.nan])
    )
    assert np.exp(log_p[0]) == pytest.approx(50 / 101, abs=0.02)  # empirical inside the reference
    assert log_p[1] < np.log(1 / 101) and log_p[2] < log_p[1] - 5  # exponential tail beyond it
    assert log_p[3] == 0.0  # no score (an alloy without a fitted density): p = 1


class _RecordingEstimator:
    """Stands in for the physics-limit estimator: an image's value is its id; the features say which images
    the last instrument fit saw (relative log-likelihood of the first alloy -1 for an image left out of it)."""

    def __init__(self) -> None:
        self.fits: list[np.ndarray] = []

    def fit_instrument(self, images: np.ndarray) -> dict[str, float]:
        self.fits.append(np.sort(images[:, 0, 0, 0]))
        return {}

    def goodness_of_fit(self, images: np.ndarray) -> np.ndarray:
        return -images[:, 0, 0, 0]  # the higher the id, the worse the fit

    def alloy_fits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = images[:, 0, 0, 0]
        log_like = np.zeros((len(ids), 5))
        log_like[:, 0] = np.where(np.isin(ids, self.fits[-1]), 0.0, -1.0)
        return log_like, np.repeat(ids[:, None], 5, axis=1)  # the "thickness" is the id


def test_the_third_fit_leaves_out_what_the_score_ranks_least_known_and_the_features_follow_it(monkeypatch):
    from alloy_mtl.evaluation import physics_unknown

    recorder = _RecordingEstimator()
    monkeypatch.setattr(physics_unknown.PhysicsLimitEstimator, "within_declared", lambda config: recorder)
    images = np.broadcast_to(np.arange(20.0)[:, None, None, None], (20, 1, 2, 2)).copy()
    config = SimulationConfig.from_params(GENERATION)

    def lowest_ids_look_unknown(features: np.ndarray) -> np.ndarray:
        return -features[:, -1]

    two_fits = physics_unknown.batch_features(config, images, batch_size=20, trim=0.3)
    assert [len(fit) for fit in recorder.fits] == [20, 14]
    np.testing.assert_array_equal(recorder.fits[1], np.arange(14.0))  # the worst-fitting 30 % left out
    assert (two_fits[:, 0] < 0).sum() == 6

    recorder.fits.clear()
    three_fits = physics_unknown.batch_features(
        config, images, batch_size=20, trim=0.3, rank=lowest_ids_look_unknown
    )
    assert [len(fit) for fit in recorder.fits] == [20, 14, 14]
    # what the rank puts highest is left out of the third fit
    np.testing.assert_array_equal(recorder.fits[2], np.arange(6.0, 20.0))
    np.testing.assert_array_equal(np.flatnonzero(three_fits[:, 0] < 0), np.arange(6))
    np.testing.assert_array_equal(three_fits[:, -1], np.arange(20.0))

    recorder.fits.clear()
    physics_unknown.batch_features(config, images, batch_size=20, trim=0.0, rank=lowest_ids_look_unknown)
    assert [len(fit) for fit in recorder.fits] == [20]  # no trim: one fit on every image


def test_a_score_pickled_before_the_third_fit_existed_still_scores_with_two(fitted):
    import pickle

    assert fitted.score_refit and fitted.summary()["score_refit"] is True
    state = dict(fitted.__dict__)
    del state["score_refit"]
    old = object.__new__(type(fitted))
    old.__dict__.update(state)
    assert pickle.loads(pickle.dumps(old)).score_refit is False


TOLERANCED = {**GENERATION, "tolerances": {"al_filter_mm": [0.8, 1.2], "kv_scale": [0.98, 1.02]}}


def test_each_fitting_session_is_one_instrument_drawn_inside_the_declared_tolerances():
    from alloy_mtl.evaluation.params import VALIDATION_DETECTOR_SEEDS
    from alloy_mtl.evaluation.physics_unknown import fitting_sets

    params = UnknownMaterialsParams(
        known_images=120, reference_images=100, batch_size=50, instrument_sessions=3
    )
    sets = fitting_sets(TOLERANCED, params)
    declared = SimulationConfig.from_params(TOLERANCED)
    assert len(sets.known) == len(sets.exposure) == 3 and len(sets.reference) == 2  # one per batch
    assert sum(c.n_images for c in sets.known) == 120 and sum(c.n_images for c in sets.reference) == 100
    filters = [c.al_filter_mm for c in (*sets.known, *sets.reference)]
    assert all(0.8 <= f <= 1.2 for f in filters) and len(set(filters)) == 5
    for session in (*sets.known, *sets.reference):
        assert session.tolerances == () and 0.98 * 40 <= session.kv[0] <= 1.02 * 40
    # an exposure session is its known session's instrument and units, other specimens
    for known, exposure in zip(sets.known, sets.exposure, strict=True):
        assert dataclasses.replace(exposure, seed=known.seed) == known
    # the threshold's references: other detector units than the ones the classifier learns on
    assert {c.detector_seed for c in sets.known} == {VALIDATION_DETECTOR_SEEDS[1]}
    assert {c.detector_seed for c in sets.reference} == {VALIDATION_DETECTOR_SEEDS[2]}
    seeds = [c.seed for c in (*sets.known, *sets.exposure, *sets.reference)]
    assert len(set(seeds)) == len(seeds)

    nominal = fitting_sets(TOLERANCED, params.model_copy(update={"instrument_sessions": 0}))
    assert [len(s) for s in (nominal.known, nominal.exposure, nominal.reference)] == [1, 1, 1]
    assert nominal.known[0].al_filter_mm == declared.al_filter_mm and nominal.known[0].kv == declared.kv


class _SessionRecorder(_RecordingEstimator):
    """Features say which fit they were taken under (the second alloy's relative log-likelihood: -fit count)."""

    def alloy_fits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_like, thickness = super().alloy_fits(images)
        log_like[:, 1] = -float(len(self.fits))
        return log_like, thickness


def _ids(ids: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.asarray(ids, float)[:, None, None, None], (len(ids), 1, 2, 2)).copy()


def test_each_session_is_fitted_on_its_own_known_images_and_its_other_images_follow_that_fit(monkeypatch):
    from alloy_mtl.evaluation import physics_unknown

    recorder = _SessionRecorder()
    monkeypatch.setattr(physics_unknown.PhysicsLimitEstimator, "within_declared", lambda config: recorder)
    known = (_ids(np.arange(10.0)), np.repeat([0, 1], 5))
    exposure = (_ids(100.0 + np.arange(6)), np.array([1, 0, 1, 0, 2, 2]))  # session 2 has no known image
    known_features, (exposure_features,) = physics_unknown.session_features(
        SimulationConfig.from_params(GENERATION), known, [exposure], trim=0.0
    )
    assert [list(fit) for fit in recorder.fits] == [
        [0.0, 1.0, 2.0, 3.0, 4.0],
        [5.0, 6.0, 7.0, 8.0, 9.0],
        [104.0, 105.0],  # fitted on its own images
    ]
    np.testing.assert_array_equal(known_features[:, 1], -np.repeat([1.0, 2.0], 5))
    np.testing.assert_array_equal(exposure_features[:, 1], [-2.0, -1.0, -2.0, -1.0, -3.0, -3.0])
    np.testing.assert_array_equal(exposure_features[:, -1], 100.0 + np.arange(6))  # row order kept


def test_features_of_the_first_two_fits_given_only_the_third_fit_runs_and_gives_the_same_features(
    monkeypatch,
):
    from alloy_mtl.evaluation import physics_unknown

    recorder = _RecordingEstimator()
    monkeypatch.setattr(physics_unknown.PhysicsLimitEstimator, "within_declared", lambda config: recorder)
    images, config = _ids(np.arange(20.0)), SimulationConfig.from_params(GENERATION)

    def lowest_ids_look_unknown(features: np.ndarray) -> np.ndarray:
        return -features[:, -1]

    two = physics_unknown.batch_features(config, images, batch_size=20, trim=0.3)
    three = physics_unknown.batch_features(config, images, 20, 0.3, lowest_ids_look_unknown)
    recorder.fits.clear()
    reused = physics_unknown.batch_features(config, images, 20, 0.3, lowest_ids_look_unknown, two_fits=two)
    assert [len(fit) for fit in recorder.fits] == [14]
    np.testing.assert_array_equal(reused, three)


@pytest.mark.slow
def test_a_score_fitted_across_the_tolerances_records_its_instruments_and_scores_a_toleranced_batch():
    params = UnknownMaterialsParams(**{**TINY, "reference_images": 100}, instrument_sessions=2)
    fitted = fit_physics_unknown(TOLERANCED, params)
    summary = fitted.summary()
    assert summary["n_instruments"] == 2 and summary["n_reference_instruments"] == 2
    assert summary["n_known"] == 200 and summary["n_reference"] == 100
    sessions = json.loads(json.dumps(summary["sessions"]))
    assert [s["role"] for s in sessions] == ["known and exposure"] * 2 + ["reference"] * 2
    assert all(0.8 <= s["al_filter_mm"] <= 1.2 for s in sessions) and len({s["seed"] for s in sessions}) == 4
    assert sum(s["n_images"] for s in sessions[:2]) == 200
    config = SimulationConfig.from_params(TOLERANCED)
    known, _ = simulate_dataset(dataclasses.replace(config, seed=77, n_images=60, al_filter_mm=1.2))
    scores = fitted.score(config, known)
    assert np.isfinite(scores).all() and (scores > fitted.threshold(0.05)).mean() <= 0.3
