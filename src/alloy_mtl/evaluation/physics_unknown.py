"""Unknown-designation score on the physics fits, taught by outlier exposure: other aluminium designations,
simulated, against the five alloys.

Another aluminium designation (2024, 3003, 5754, ...) lies close to one of the five in the features a network
learns, so the models' own unknown score (Mahalanobis distance of their features) misses most of them. The
physics-limit estimator's per-alloy fits of an image (each alloy's log-likelihood relative to the best one, the
best one, the best alloy's fitted thickness: :func:`physics_features`) carry what a designation does to the
attenuation spectrum. A gradient-boosted classifier learns, on those fits, the five alloys against a table of
*other* designations (``exposure``, catalogued registration limits; none of them is what it will be asked
about), and scores how much an image looks like "an aluminium alloy that is not one of the five" (Hendrycks et
al. 2019, "Deep anomaly detection with outlier exposure", on physics features instead of a network's).

The fits need the instrument: where images are scored, the estimator fits it per batch from the images
themselves inside the declared tolerances (as the drift alarm and the evaluation set do), so the score follows
the instrument in operation: on all of the batch, without its worst-fitting images, and without the images the
score itself calls least known (unknown plates in a batch would pull the fit). The features depend on the image size and the beam's channels, so a score fitted
for one does not apply to another (:meth:`PhysicsUnknownScore.mismatch`). The threshold for a stated rate of
rejected known images is read from quantiles of scores of fresh known-alloy images (scored batch by batch as
at inference).

A lab's instrument is never the nominal one: the images the score is fitted on are taken by instruments drawn
inside the declared tolerances (``instrument_sessions``), each one's features under that instrument fitted from
its own images, so the classifier, the density and the threshold see how the fits move across the tolerances (at
the nominal instrument alone, the score withheld 17 % of known images at the edge of the filtration tolerance,
where the instrument is fitted exactly).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from alloy_mtl.config import ParamsModel
from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.evaluation_set import conformal_set_config
from alloy_mtl.evaluation.params import VALIDATION_DETECTOR_SEEDS, EvaluationSetParams
from alloy_mtl.physics.alloys import AlloySpec
from alloy_mtl.physics.calibrated_generation import config_instrument
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument import draw_settings, instrument_changes
from alloy_mtl.physics.materials import material_from_params
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

__all__ = [
    "EXPOSURE_DESIGNATIONS",
    "PhysicsUnknownScore",
    "UnknownMaterialsParams",
    "FitDensity",
    "FittingSets",
    "batch_features",
    "batch_slices",
    "fit_physics_unknown",
    "fitting_sets",
    "imaged",
    "taught_features",
    "physics_features",
    "session_features",
    "session_record",
]

logger = logging.getLogger(__name__)

UNKNOWN_SEED_OFFSET = 5_000_011
"""Seed offset of the images the score is fitted on (none of the training, evaluation or conformal images)."""
OPENMP_THREADS = 1
"""Threads of the classifier: a few thousand rows of seven numbers take a second on one; with OpenMP threads
competing with another busy process (a parallel test, a training run) the same fit took minutes."""
REFERENCE_LEVELS = 401
"""Quantile levels of the known images' scores kept with the score (every 0.25 %)."""

#: Catalogued wrought aluminium alloys (Aluminum Association registration limits, wt %; impurities as ranges
#: from 0): the default exposure. None is one of the five alloys, nor one of ``physics.materials.NEAR_MATERIALS``
#: (the evaluation's unknown designations), so the evaluation measures designations the score never saw.
EXPOSURE_DESIGNATIONS: dict[str, dict[str, Any]] = {
    "1100": {"density_g_cm3": 2.71, "limits_wt_pct": {"Si": [0, 0.5], "Fe": [0, 0.45], "Cu": [0.05, 0.2], "Zn": [0, 0.1]}},
    "2014": {"density_g_cm3": 2.80, "limits_wt_pct": {"Si": [0.5, 1.2], "Fe": [0, 0.7], "Cu": [3.9, 5.0], "Mn": [0.4, 1.2], "Mg": [0.2, 0.8], "Zn": [0, 0.25]}},
    "3004": {"density_g_cm3": 2.72, "limits_wt_pct": {"Si": [0, 0.3], "Fe": [0, 0.7], "Cu": [0, 0.25], "Mn": [1.0, 1.5], "Mg": [0.8, 1.3], "Zn": [0, 0.25]}},
    "4032": {"density_g_cm3": 2.68, "limits_wt_pct": {"Si": [11.0, 13.5], "Fe": [0, 1.0], "Cu": [0.5, 1.3], "Mg": [0.8, 1.3], "Ni": [0.5, 1.3]}},
    "5052": {"density_g_cm3": 2.68, "limits_wt_pct": {"Si": [0, 0.25], "Fe": [0, 0.4], "Cu": [0, 0.1], "Mg": [2.2, 2.8], "Cr": [0.15, 0.35], "Zn": [0, 0.1]}},
    "5086": {"density_g_cm3": 2.66, "limits_wt_pct": {"Si": [0, 0.4], "Fe": [0, 0.5], "Mn": [0.2, 0.7], "Mg": [3.5, 4.5], "Cr": [0.05, 0.25], "Zn": [0, 0.25]}},
    "6063": {"density_g_cm3": 2.69, "limits_wt_pct": {"Si": [0.2, 0.6], "Fe": [0, 0.35], "Cu": [0, 0.1], "Mg": [0.45, 0.9], "Zn": [0, 0.1]}},
    "6005": {"density_g_cm3": 2.70, "limits_wt_pct": {"Si": [0.6, 0.9], "Fe": [0, 0.35], "Cu": [0, 0.1], "Mn": [0, 0.1], "Mg": [0.4, 0.6], "Zn": [0, 0.1]}},
    "7050": {"density_g_cm3": 2.83, "limits_wt_pct": {"Si": [0, 0.12], "Fe": [0, 0.15], "Cu": [2.0, 2.6], "Mg": [1.9, 2.6], "Zn": [5.7, 6.7], "Zr": [0.08, 0.15]}},
    "7005": {"density_g_cm3": 2.78, "limits_wt_pct": {"Zn": [4.0, 5.0], "Mg": [1.0, 1.8], "Mn": [0.2, 0.7], "Cr": [0.06, 0.2], "Zr": [0.08, 0.2]}},
}  # fmt: skip


class UnknownMaterialsParams(ParamsModel):
    """``unknown_materials``: the physics unknown-designation score (outlier exposure on the estimator's fits)
    that folder inference applies beside each model's own unknown score."""

    enabled: bool = True
    """Fit the score (false: inference answers with the models' own unknown score only)."""
    exposure: dict[str, dict[str, Any]] = EXPOSURE_DESIGNATIONS
    """Designations shown as "not one of the five": name -> {density_g_cm3, base (default Al), limits_wt_pct:
    {element: [min, max]}}. Leave out what you want to measure the score on."""
    known_images: int = Field(1500, ge=100)
    """Fresh images of the five alloys, balanced, the classifier learns as known."""
    images_per_designation: int = Field(120, ge=10)
    """Images of each exposure designation."""
    reference_images: int = Field(1000, ge=100)
    """Fresh known-alloy images whose scores set the threshold for a stated rejection rate."""
    batch_size: int = Field(200, ge=20)
    """Images per instrument fit when scoring (in the order given); a smaller remainder joins the batch before."""
    trim: float = Field(0.3, ge=0.0, le=0.8)
    """Share of a batch's worst-fitting images left out of its instrument fit (the instrument is fitted on all,
    then again without them): unknown designations in a batch pull a fit on all images off the instrument."""
    score_refit: bool = True
    """Fit each batch's instrument a third time, without the ``trim`` share of the batch this score calls least
    known: unknown plates in a batch still pull the second fit, enough that known images of the alloy nearest
    them are withheld (on the evaluation's mixed set, a fifth of each batch unknown: 7.5 % of known images at a
    1 % setting without it, 1050 31 %)."""
    density_weight: float = Field(100.0, ge=1.0)
    """The fit density's p-value is multiplied by this before the smaller of the two is taken: it reacts to
    another detector unit's shift more than the exposure classifier, so it gets about 1/weight of the rejection
    budget and flags only what lies far from every known image. 1: equal shares."""
    max_iter: int = Field(300, ge=10)
    """Boosting iterations of the classifier."""
    instrument_sessions: int = Field(8, ge=0)
    """Instruments, each with its settings drawn inside the declared tolerances, that image the known and exposure
    images (a specimen on one of them), each one's features under the instrument fitted from its own known images
    as a batch's is fitted at inference; the reference images come from further draws, one per batch. 0: every
    image at the nominal instrument, features under one instrument fitted on all known images (such a score
    withheld 17 % of known images at the edge of the filtration tolerance). Each session needs a 3-image specimen
    of every alloy and an image of every designation: at most ``known_images / 15`` and ``images_per_designation``
    sessions. The drawn instruments are listed in the score's summary (``sessions``)."""

    @field_validator("exposure")
    @classmethod
    def _designations(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        problems = [
            f"{name!r} is one of the five alloys, not an exposure designation"
            for name in value
            if name in ALLOYS
        ]
        for name, spec in value.items():
            try:
                material_from_params(name, spec if isinstance(spec, Mapping) else {})
            except ValueError as error:
                problems.append(str(error))
        if not value:
            problems.append("expected at least one designation")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _every_session_images_every_material(self) -> UnknownMaterialsParams:
        sessions = self.instrument_sessions
        if not sessions:
            return self
        specimen = EvaluationSetParams().images_per_specimen
        least_known = sessions * len(ALLOYS) * specimen
        problems = []
        if self.known_images < least_known:
            problems.append(
                f"known_images: {self.known_images} in {sessions} instrument_sessions leave a session without a "
                f"{specimen}-image specimen of each of the {len(ALLOYS)} alloys (the simulator would round it up); "
                f"expected at least {least_known}, or fewer instrument_sessions"
            )
        if self.images_per_designation < sessions:
            problems.append(
                f"images_per_designation: {self.images_per_designation} in {sessions} instrument_sessions leave "
                f"a session without an image of each designation; expected at least {sessions}, or fewer "
                "instrument_sessions"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def materials(self) -> list[AlloySpec]:
        """The exposure designations as simulator materials."""
        return [material_from_params(name, spec) for name, spec in self.exposure.items()]


def physics_features(estimator: PhysicsLimitEstimator, images: np.ndarray) -> np.ndarray:
    """Per image (N, A + 2): each alloy's log-likelihood relative to the best, the best one, and the best alloy's
    fitted thickness (mm), under the estimator's current instrument."""
    log_like, thickness = estimator.alloy_fits(images)
    log_like = np.nan_to_num(log_like, nan=-1e9, neginf=-1e9, posinf=1e9)
    rows = np.arange(len(log_like))
    best = log_like.argmax(axis=1)
    top = log_like[rows, best]
    return np.column_stack([log_like - top[:, None], top, thickness[rows, best]])


def batch_slices(n_images: int, batch_size: int) -> list[slice]:
    """Consecutive batches of ``batch_size`` covering ``n_images``; a remainder under half a batch joins the
    batch before (an instrument fitted on a handful of images is noisy)."""
    starts = list(range(0, n_images, batch_size))
    if len(starts) > 1 and n_images - starts[-1] < batch_size // 2:
        starts.pop()
    return [slice(s, starts[i + 1] if i + 1 < len(starts) else n_images) for i, s in enumerate(starts)]


def _compressed(features: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): relative log-likelihoods run from 0 to -1e6, thickness over a few mm."""
    return np.sign(features) * np.log1p(np.abs(features))


@dataclasses.dataclass(frozen=True)
class FitDensity:
    """Per best-fitting alloy, a Gaussian of the known images' (compressed) physics features: how unlike the
    known images that fit the same alloy an image is (squared Mahalanobis distance; NaN for an alloy too few
    known images fit best)."""

    means: np.ndarray
    precisions: np.ndarray
    fitted: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> FitDensity:
        """Fit on known images' :func:`physics_features` (N, A + 2)."""
        n_alloys, width = features.shape[1] - 2, features.shape[1]
        x, best = _compressed(features), features[:, :-2].argmax(axis=1)
        means, precisions = np.zeros((n_alloys, width)), np.zeros((n_alloys, width, width))
        fitted = np.zeros(n_alloys, dtype=bool)
        for alloy in range(n_alloys):
            rows = x[best == alloy]
            if len(rows) > 2 * width:
                means[alloy] = rows.mean(axis=0)
                covariance = np.cov(rows.T) + np.eye(width) * 1e-6 * max(
                    np.cov(rows.T).diagonal().mean(), 1e-12
                )
                precisions[alloy], fitted[alloy] = np.linalg.inv(covariance), True
        return cls(means, precisions, fitted)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """The squared distance (N,) of each image to its best-fitting alloy's known images."""
        x, best = _compressed(features), features[:, :-2].argmax(axis=1)
        diff = x - self.means[best]
        out = np.einsum("ni,nij,nj->n", diff, self.precisions[best], diff)
        return np.where(self.fitted[best], out, np.nan)


TAIL_LEVEL = 0.9
"""Above this quantile of the reference scores, p-values follow an exponential tail fitted to the excesses, so an
image far beyond every reference image gets a p-value below 1/(n + 1) and the thresholds stay reachable."""


def _log_p_values(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """log of the share of ``reference`` (sorted) scores at least as high as each score, (count + 1) / (n + 1),
    with an exponential tail above the ``TAIL_LEVEL`` quantile; 0 (p = 1) for NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    above = len(reference) - np.searchsorted(reference, np.nan_to_num(scores, nan=-np.inf), side="left")
    empirical = np.log((above + 1.0) / (len(reference) + 1.0))
    start = float(np.quantile(reference, TAIL_LEVEL))
    excess = reference[reference > start] - start
    scale = max(float(excess.mean()) if len(excess) else 0.0, 1e-9)
    tail = np.log(1.0 - TAIL_LEVEL) - (np.nan_to_num(scores, nan=start) - start) / scale
    log_p = np.where(scores > start, np.minimum(empirical, tail), empirical)
    return np.where(np.isnan(scores), 0.0, log_p)


@dataclasses.dataclass(frozen=True)
class PhysicsUnknownScore:
    """A fitted unknown-designation score (:func:`fit_physics_unknown`); a pickled Kedro dataset.

    Two views of the physics fits, combined: the exposure classifier's log-odds of "another designation", and
    the distance to the known images fitting the same alloy (:class:`FitDensity`, which flags what lies far from
    both the known and the exposure images, where the classifier only extrapolates). Each becomes a p-value
    against the known reference images; the score is -log of the smaller one, the density's weighted
    (``UnknownMaterialsParams.density_weight``).
    """

    classifier: HistGradientBoostingClassifier
    density: FitDensity
    exposure_reference: np.ndarray
    density_reference: np.ndarray
    reference: np.ndarray
    kv: tuple[float, ...]
    image_size: int
    exposure: tuple[str, ...]
    batch_size: int
    counts: Mapping[str, int]
    trim: float = 0.3
    density_weight: float = 100.0
    score_refit: bool = False
    instrument: Mapping[str, Any] | None = None
    sessions: tuple[Mapping[str, Any], ...] = ()
    """The instruments the fitting images were taken at (:func:`session_record`), for traceability."""

    def mismatch(self, config: SimulationConfig) -> str | None:
        """Why the score does not apply to images of ``config`` (another beam, image size or instrument than it
        was fitted for: kV, filtration, scintillator, scatter, blur, dose, declared tolerances), or None."""
        problems = []
        if tuple(config.kv) != self.kv:
            problems.append(f"fitted for {self.kv} kV, the images are taken at {tuple(config.kv)} kV")
        if config.image_size != self.image_size:
            problems.append(f"fitted at {self.image_size} px, the images are {config.image_size} px")
        if self.instrument is not None:
            current = config_instrument(config)
            changed = [
                key
                for key, value in self.instrument.items()
                if key != "kv" and not _same_setting(value, current.get(key))
            ]
            problems.extend(
                f"fitted for {key} {self.instrument[key]}, the images' instrument has {current.get(key)}"
                for key in changed
            )
        if not problems:
            return None
        return "; ".join(problems) + " (refit: `kedro run --pipeline unknown_materials`)"

    def score(self, config: SimulationConfig, images: np.ndarray) -> np.ndarray:
        """The score (N,) of (N, C, H, W) I/I0 ``images`` of ``config``'s instrument (its declared tolerances bound
        the per-batch fit), the instrument fitted per batch of ``batch_size`` in the given order.

        Raises:
            ValueError: the score does not apply to ``config`` (:meth:`mismatch`).
        """
        mismatch = self.mismatch(config)
        if mismatch:
            raise ValueError(f"physics unknown score: {mismatch}")
        return self.combined(*self.components(self.features(config, images)))

    def features(self, config: SimulationConfig, images: np.ndarray) -> np.ndarray:
        """:func:`batch_features` of ``images`` as :meth:`score` fits each batch's instrument (with
        ``score_refit``, a third fit without the ``trim`` share of the batch this score puts highest)."""
        rank = self._unknown_rank if self.score_refit else None
        return batch_features(config, images, self.batch_size, self.trim, rank)

    def _unknown_rank(self, features: np.ndarray) -> np.ndarray:
        return self.combined(*self.components(features))

    def combined(self, exposure: np.ndarray, density: np.ndarray) -> np.ndarray:
        """-log of the smaller p-value of the two components (the density's weighted, see
        ``UnknownMaterialsParams.density_weight``) against the known reference images."""
        weighted = np.minimum(
            0.0, np.log(self.density_weight) + _log_p_values(self.density_reference, density)
        )
        return -np.minimum(_log_p_values(self.exposure_reference, exposure), weighted)

    def components(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exposure classifier's log-odds and the fit density's distance of :func:`physics_features` rows."""
        if not len(features):
            return np.empty(0), np.empty(0)
        with threadpool_limits(OPENMP_THREADS, user_api="openmp"):
            exposure = self.classifier.decision_function(features)
        return exposure, self.density.distances(features)

    def threshold(self, reject_rate: float) -> float:
        """The score above which an image is called unknown, so that ``reject_rate`` of the fresh known-alloy
        images would be (interpolated between the kept quantiles)."""
        rate = float(reject_rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"reject_rate: expected a fraction in [0, 1), got {reject_rate!r}")
        return float(np.interp(1.0 - rate, np.linspace(0.0, 1.0, REFERENCE_LEVELS), self.reference))

    def summary(self) -> dict[str, Any]:
        """What the score was fitted on and its reference quantiles, for reports and MLflow."""
        return {
            "exposure": list(self.exposure),
            "kv": list(self.kv),
            "image_size": self.image_size,
            "batch_size": self.batch_size,
            "trim": self.trim,
            "density_weight": self.density_weight,
            "score_refit": self.score_refit,
            **self.counts,
            "sessions": [dict(session) for session in self.sessions],
            **{f"reference_q{q}": self.threshold(1.0 - q / 100.0) for q in (50, 95, 99)},
        }


def batch_features(
    config: SimulationConfig,
    images: np.ndarray,
    batch_size: int,
    trim: float = 0.0,
    rank: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    two_fits: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`physics_features` of ``images``, the instrument fitted per batch (:func:`batch_slices`) inside
    ``config``'s declared tolerances; with ``trim``, fitted again without that share of the batch's worst-fitting
    images; with ``rank`` (features -> how unknown each image looks, higher more), fitted a third time without
    the ``trim`` share of the batch ``rank`` puts highest, and the features taken again. ``two_fits``: the
    features of the first two fits of the same images, already taken (only the third fit runs)."""
    images = np.asarray(images)
    features = np.empty((len(images), len(ALLOYS) + 2))
    if not len(images):
        return features
    estimator = PhysicsLimitEstimator.within_declared(config)
    third = trim > 0 and rank is not None
    for batch in batch_slices(len(images), batch_size):
        x = images[batch]
        if two_fits is not None and third:
            features[batch] = two_fits[batch]
        else:
            _fit_trimmed(estimator, x, trim)
            features[batch] = physics_features(estimator, x)
        if third:
            unknown = rank(features[batch])
            estimator.fit_instrument(x[unknown <= np.quantile(unknown, 1.0 - trim)])
            features[batch] = physics_features(estimator, x)
    return features


def _fit_trimmed(estimator: PhysicsLimitEstimator, images: np.ndarray, trim: float) -> None:
    """Fit the estimator's instrument on ``images``, with ``trim`` again without that share of the worst-fitting
    ones."""
    estimator.fit_instrument(images)
    if trim > 0:
        fit = estimator.goodness_of_fit(images)
        estimator.fit_instrument(images[fit >= np.quantile(fit, trim)])


@dataclasses.dataclass(frozen=True)
class FittingSets:
    """The generated sets a score is fitted on, each a tuple of sessions (one instrument each): ``known`` (the
    five alloys, balanced) and ``exposure`` (the exposure designations) sessions pair up, the exposure session
    imaged at its known session's instrument; ``reference`` sessions, at further instruments, set the threshold.
    """

    declared: SimulationConfig
    known: tuple[SimulationConfig, ...]
    exposure: tuple[SimulationConfig, ...]
    reference: tuple[SimulationConfig, ...]


def fitting_sets(generation: Mapping[str, Any] | None, params: UnknownMaterialsParams) -> FittingSets:
    """The sets :func:`fit_physics_unknown` fits the score on: fresh specimens of seeds no training, evaluation
    or conformal image has, imaged by the conformal set's validation detector units (none of the evaluation's;
    the reference's by another pool of them). With ``instrument_sessions``: that many known and exposure sessions
    and one reference session per ``batch_size`` images, each session all its units at one instrument drawn inside
    the declared tolerances (a lab images a batch with one instrument; the units vary the detector within it).
    Without: one session each at the nominal instrument."""
    declared = SimulationConfig.from_params(generation)
    base = conformal_set_config(generation, params.known_images)
    seed = declared.seed + UNKNOWN_SEED_OFFSET
    sessions = params.instrument_sessions
    if not sessions:
        known = dataclasses.replace(base, seed=seed)
        return FittingSets(
            declared,
            (known,),
            (dataclasses.replace(known, seed=seed + 1),),
            (dataclasses.replace(known, seed=seed + 2, n_images=params.reference_images),),
        )
    n_reference = max(1, params.reference_images // params.batch_size)
    reference_pool = dataclasses.replace(base, detector_seed=VALIDATION_DETECTOR_SEEDS[2])
    known = _sessions(base, declared, sessions, seed, params.known_images)
    return FittingSets(
        declared,
        known,
        tuple(dataclasses.replace(config, seed=config.seed + 1) for config in known),
        _sessions(reference_pool, declared, n_reference, seed + 2, params.reference_images, draw=1),
    )


def session_record(role: str, config: SimulationConfig) -> dict[str, Any]:
    """What a fitting session was: its ``role`` (``known and exposure`` or ``reference``), image seed, detector
    units' seed and count, images, and instrument settings."""
    settings = {key: value for key, value in config_instrument(config).items() if key != "tolerances"}
    return {
        "role": role,
        "seed": config.seed,
        "detector_seed": config.detector_seed,
        "detector_units": config.instruments,
        "n_images": config.n_images,
        **settings,
    }


def _sessions(
    pool: SimulationConfig, declared: SimulationConfig, count: int, seed: int, n_images: int, *, draw: int = 0
) -> tuple[SimulationConfig, ...]:
    """``count`` sessions of ``pool`` sharing ``n_images``, seeds ``seed + 4 k``, each at instrument settings
    drawn inside ``declared``'s tolerances (stream ``draw`` of the draws)."""
    rng = np.random.default_rng([declared.seed + UNKNOWN_SEED_OFFSET, draw])
    return tuple(
        dataclasses.replace(
            pool,
            seed=seed + 4 * k,
            n_images=int(share),
            **instrument_changes(pool, draw_settings(declared.tolerances, rng)),
        )
        for k, share in enumerate(_shares(n_images, count))
    )


def imaged(
    sessions: Sequence[SimulationConfig], materials: Sequence[tuple[AlloySpec, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images, session of each image) of ``sessions`` (:func:`simulate_dataset`); ``materials`` (specification,
    images) are imaged instead of the five alloys, their images shared among the sessions."""
    parts, session = [], []
    for k, config in enumerate(sessions):
        share = (
            None
            if materials is None
            else [(spec, int(_shares(n, len(sessions))[k])) for spec, n in materials]
        )
        images, _ = simulate_dataset(config, materials=share)
        parts.append(images)
        session.append(np.full(len(images), k))
    return np.concatenate(parts), np.concatenate(session)


def _shares(n: int, parts: int) -> np.ndarray:
    """``parts`` near-equal integer shares of ``n`` (each the floor or the ceiling of ``n / parts``)."""
    return np.diff(np.linspace(0, n, parts + 1).round().astype(int))


def session_features(
    declared: SimulationConfig,
    known: tuple[np.ndarray, np.ndarray],
    others: Sequence[tuple[np.ndarray, np.ndarray]],
    trim: float,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """:func:`physics_features` of ``known`` and ``others`` ((images, session) pairs, :func:`imaged`), each
    session's under the instrument fitted (inside ``declared``'s tolerances, trimmed as a batch at inference) on
    that session's known images, or, for a session without any, on its other images."""
    estimator = PhysicsLimitEstimator.within_declared(declared)
    sets = [known, *others]
    features = [np.empty((len(images), len(ALLOYS) + 2)) for images, _ in sets]
    for session in np.unique(np.concatenate([sessions for _, sessions in sets])):
        mine = [sessions == session for _, sessions in sets]
        fitting = next(images[rows] for (images, _), rows in zip(sets, mine, strict=True) if rows.any())
        _fit_trimmed(estimator, fitting, trim)
        for (images, _), rows, out in zip(sets, mine, features, strict=True):
            if rows.any():
                out[rows] = physics_features(estimator, images[rows])
    return features[0], features[1:]


def _same_setting(fitted: Any, current: Any) -> bool:
    if isinstance(fitted, Mapping):
        return (
            isinstance(current, Mapping)
            and set(fitted) == set(current)
            and all(_same_setting(fitted[key], current[key]) for key in fitted)
        )
    try:
        return bool(np.allclose(np.asarray(fitted, float), np.asarray(current, float), rtol=1e-9, atol=0.0))
    except (TypeError, ValueError):
        return False


def _with_references(
    score: PhysicsUnknownScore, exposure_scores: np.ndarray, density_scores: np.ndarray
) -> PhysicsUnknownScore:
    return dataclasses.replace(
        score,
        exposure_reference=np.sort(exposure_scores),
        density_reference=np.sort(np.nan_to_num(density_scores, nan=-np.inf)),
    )


def taught_features(
    sets: FittingSets,
    params: UnknownMaterialsParams,
    others: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The :func:`physics_features` the score's classifier and density learn: (known, exposure, ``others``),
    ``others`` being further (images, session) pairs of ``sets.known``'s sessions (:func:`imaged`) taken the
    same way. With ``instrument_sessions``, each session's under the instrument fitted on its known images
    (:func:`session_features`); without, all under one instrument fitted on every known image."""
    known = imaged(sets.known)
    exposed = imaged(sets.exposure, [(spec, params.images_per_designation) for spec in params.materials()])
    logger.info(
        "physics unknown score: fitting on %d known and %d exposure images (%s), %s",
        len(known[0]),
        len(exposed[0]),
        ", ".join(params.exposure),
        f"{params.instrument_sessions} instruments inside the declared tolerances"
        if params.instrument_sessions
        else "the nominal instrument",
    )
    if params.instrument_sessions:
        known_features, (exposure_features, *rest) = session_features(
            sets.declared, known, [exposed, *others], params.trim
        )
        return known_features, exposure_features, rest
    estimator = PhysicsLimitEstimator.within_declared(sets.declared)
    estimator.fit_instrument(known[0])
    known_features, exposure_features, *rest = (
        physics_features(estimator, images) for images, _ in (known, exposed, *others)
    )
    return known_features, exposure_features, rest


def fit_physics_unknown(
    generation: Mapping[str, Any] | None, params: UnknownMaterialsParams
) -> PhysicsUnknownScore:
    """Fit the score for the instrument ``generation`` describes (nominal, or a lab's once calibrated).

    Known and exposure images are fresh specimens imaged by validation detector units (none of the evaluation's)
    in sessions at instruments drawn inside the declared tolerances (:func:`fitting_sets`), each session's
    features under the instrument fitted on its known images; the reference quantiles come from further known
    images of other units and instruments, each session scored batch by batch as at inference.
    """
    sets = fitting_sets(generation, params)
    declared = sets.declared
    known_features, exposure_features, _ = taught_features(sets, params)
    features = np.vstack([known_features, exposure_features])
    labels = np.r_[np.zeros(len(known_features)), np.ones(len(exposure_features))]
    weights = np.where(labels == 0, 1.0 / len(known_features), 1.0 / len(exposure_features))
    classifier = HistGradientBoostingClassifier(max_iter=params.max_iter, random_state=declared.seed)
    with threadpool_limits(OPENMP_THREADS, user_api="openmp"):
        classifier.fit(features, labels, sample_weight=weights)
    reference_images, reference_sessions = imaged(sets.reference)
    partial = PhysicsUnknownScore(
        classifier=classifier,
        density=FitDensity.fit(known_features),
        exposure_reference=np.empty(0),
        density_reference=np.empty(0),
        reference=np.empty(0),
        kv=tuple(declared.kv),
        image_size=int(sets.declared.image_size),
        exposure=tuple(params.exposure),
        batch_size=params.batch_size,
        counts={
            "n_known": len(known_features),
            "n_exposure": len(exposure_features),
            "n_reference": len(reference_images),
            "n_instruments": len(sets.known),
            "n_reference_instruments": len(sets.reference),
        },
        trim=params.trim,
        density_weight=params.density_weight,
        instrument=config_instrument(declared),
        sessions=(
            *(session_record("known and exposure", config) for config in sets.known),
            *(session_record("reference", config) for config in sets.reference),
        ),
    )
    # each reference session is scored as one stream (batches of batch_size inside it), as at inference
    groups = [np.flatnonzero(reference_sessions == k) for k in range(len(sets.reference))]
    two_fits = np.empty((len(reference_images), len(ALLOYS) + 2))
    for rows in groups:
        two_fits[rows] = batch_features(declared, reference_images[rows], params.batch_size, params.trim)
    exposure_scores, density_scores = partial.components(two_fits)
    fitted = _with_references(partial, exposure_scores, density_scores)
    if params.score_refit:
        # the third fit ranks a batch with references of the two-fit features; the final ones follow from it
        three_fits = np.empty_like(two_fits)
        for rows in groups:
            three_fits[rows] = batch_features(
                declared,
                reference_images[rows],
                params.batch_size,
                params.trim,
                fitted._unknown_rank,
                two_fits=two_fits[rows],
            )
        exposure_scores, density_scores = partial.components(three_fits)
        fitted = dataclasses.replace(
            _with_references(partial, exposure_scores, density_scores), score_refit=True
        )
    combined = fitted.combined(exposure_scores, density_scores)
    fitted = dataclasses.replace(
        fitted, reference=np.quantile(combined, np.linspace(0.0, 1.0, REFERENCE_LEVELS))
    )
    logger.info(
        "physics unknown score fitted: reference median %.2f, 99th percentile %.2f",
        fitted.threshold(0.5),
        fitted.threshold(0.01),
    )
    return fitted
