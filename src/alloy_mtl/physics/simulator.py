"""Physics-based simulator of multi-energy X-ray radiographs of aluminium-alloy wedges.

Geometry. Every specimen is a wedge of one alloy, ``wedge_length_mm`` long, whose thickness rises linearly from
``wedge_thickness_mm[0]`` to ``wedge_thickness_mm[1]`` (the reference lab: a 7 cm wedge, exposed at 50 kV,
300 uA). Each specimen's slope deviates from nominal by its machining tolerance (``wedge_slope_sigma``,
relative). An image shows a ``field_of_view_mm`` window of the wedge; thickness ramps along the image width
(W axis, thin -> thick left to right) and is constant along the height (H axis). The ``images_per_specimen``
windows of one specimen are stratified along the wedge, so each specimen covers thin and thick segments.

Physics per image, channel c (one exposure per tube voltage ``kv[c]``), column x:
    T_c(x) = sum_E w_c(E) exp(-mu(E) t(x)),   w_c(E) ∝ photons_c(E) * eta(E) * E   (see ``spectrum``),
with mu(E) the specimen's linear attenuation (its own sampled composition and density, ``attenuation``).

Acquisition (what a lab gets after flat-field correction, in units of the open beam I/I0):
    * scatter: scatter-kernel superposition in the spirit of Ohnesorge et al. (1999), S = scatter_fraction * G_s * [T (-ln T)], a Gaussian
      kernel G_s of width ``scatter_width`` x field width; zero for no specimen and for an opaque one;
    * photons: ``dose`` incident photons per pixel in the open beam, scaled by the tube-current drift of that
      exposure (``drift``, relative sd) and by the anode heel profile; Gaussian approximation of the
      compound-Poisson energy-integrating signal (mean and variance from the spectrum, exact first two moments);
    * heel effect: the raw exposure has a linear intensity gradient of amplitude ``heel`` (edge to edge) along the
      anode-cathode axis, here the image height; flat-fielding divides by a reference with the nominal gradient,
      so what survives is the per-exposure wander of the amplitude (``heel_jitter``, relative sd);
    * detector blur: Gaussian PSF of ``blur_sigma_px`` pixels applied after the quantum noise (scintillator);
    * gain/offset: a per-pixel fixed pattern that the flat field did not remove (relative sd
      ``fixed_pattern_gain_sigma``, additive sd ``fixed_pattern_offset_sigma``, drawn once per dataset and
      channel), a per-image detector gain (``gain_sigma``) and a per-exposure dark offset (``offset_sigma``);
    * dead pixels: a fixed ``dead_pixel_fraction`` of detector pixels reads 0 in every image and channel.

Instrument units (domain randomisation, ``instrument``): with ``instruments`` > 1 each specimen is imaged by
one of that many detector units, drawn uniformly; each unit has a fixed pattern of its own and, where
``tolerances`` are declared, beam and detector settings drawn inside them (kV, filtration, scintillator,
scatter, blur, dose). Unit 0's fixed pattern is the one ``detector_seed`` names, so ``instruments: 1`` without
tolerances is the one-detector dataset, bit for bit. Labels stay the material's: ``absorption`` is defined
under the nominal spectrum whichever unit imaged the specimen.

Default calibration. Nuisance levels are those of a stable, warmed-up microfocus tube and a flat panel:
0.5 % tube-current drift, 0.2 % detector gain and 0.02 % dark-offset variation per exposure, a 0.5 % residual
gain pattern, 3 per mille wedge-slope tolerance, 2e4 photons per (binned) pixel, and compositions spread
about the designation centre with sd = range / 12 (``composition_spread`` 0.5: one producer's cast-to-cast
variation rather than the full registration window). With them the physics-limit estimator reaches about
0.92-0.96 accuracy on a fresh default dataset (0.95 on seed 2024); 5083 and 6082 (Mg/Si/Mn alloys whose
attenuation is within 1.5 % of each other and of 1050) are the hardest, 2017 and 7075 (Cu, Zn) are
separated perfectly. Per-exposure level errors matter most: they remove the absolute -ln(I/I0) level, so
the alloy must be read from the attenuation gradient along the wedge and the spectral shape across kV.

Labels: ``thickness_mm`` is the mean of the image's thickness map; ``absorption`` is the effective linear
attenuation coefficient mu_eff = -ln(T_ref) / t (1/cm) at ``reference_kv``, T_ref the noise-free, scatter-free
polychromatic transmission (detector-weighted) through the image's mean thickness for the specimen's own
composition and density.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from alloy_mtl.constants import ALLOYS, INSTRUMENT_COLUMN_PREFIX, METADATA_COLUMNS
from alloy_mtl.physics.alloys import AlloySpec, get_alloy, sample_composition, specimen_density
from alloy_mtl.physics.attenuation import composition_matrix, mass_attenuation_table
from alloy_mtl.physics.instrument import (
    RECORDED_SETTINGS,
    Tolerances,
    detector_seed_sequence,
    draw_settings,
    instrument_changes,
    parse_tolerances,
    recorded_settings,
)
from alloy_mtl.physics.spectrum import detector_response, energy_grid, tube_spectrum

__all__ = [
    "DEFAULT_CLASS_ORDER",
    "ChannelWeights",
    "DatasetPlan",
    "InstrumentUnit",
    "SimulationConfig",
    "channel_weights",
    "class_counts",
    "gaussian_matrix",
    "plan_dataset",
    "simulate_dataset",
]

logger = logging.getLogger(__name__)

DEFAULT_CLASS_ORDER: tuple[str, ...] = ("6082", "5083", "1050", "7075", "2017")
"""Head -> tail by how common the alloys are in an industrial materials lab: 6082 (the standard structural
extrusion alloy) and 5083 (marine/structural plate) are the workhorses, 1050 (commercially pure sheet) is common,
7075 (aerospace, high strength) is specialist and 2017 (old duralumin, largely superseded by 2014/2024) rare."""

_CHUNK = 256
"""Images rendered per chunk; fixed so that results never depend on whether ``out`` is given."""


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of the simulated wedge radiograph dataset (all have defaults; see module docstring).

    Attributes:
        seed: seed of every random draw (same seed -> bit-identical output).
        detector_seed: seed of the detector's fixed pattern (per-pixel gain and offset, dead pixels); None
            derives it from ``seed``. Datasets imaged with one detector share it (an evaluation set of new
            specimens keeps the training data's detector).
        n_images: target number of images (the long-tail rounding and per-class minimum may add a few).
        image_size: H = W in pixels.
        kv: tube voltage of each channel (kV); one entry gives single-energy images.
        reference_kv: tube voltage at which the ``absorption`` label mu_eff is defined.
        imbalance_ratio: n_head / n_tail of the exponential long-tail class profile (1 = balanced).
        class_order: alloys from head (most images) to tail; see ``DEFAULT_CLASS_ORDER``.
        min_images_per_class: floor of every class count.
        images_per_specimen: images (wedge windows) per specimen.
        wedge_thickness_mm: (thin end, thick end) of the wedge in mm.
        wedge_length_mm: wedge length in mm (the reference lab used 70 mm).
        field_of_view_mm: wedge length imaged across the image width (mm).
        wedge_slope_sigma: relative sd of a specimen's wedge slope (machining tolerance).
        composition_spread: scale of the within-designation composition spread (0 = nominal composition).
        dose: incident photons per pixel in the open beam (``inf`` = no photon noise).
        drift: relative sd of the tube current per exposure (per image and channel).
        heel: edge-to-edge amplitude of the anode heel gradient in raw exposures (along the height).
        heel_jitter: relative sd of the per-exposure heel amplitude about the flat-field reference.
        scatter_fraction: amplitude of the scatter kernel (see module docstring).
        scatter_width: sd of the scatter kernel as a fraction of the image width.
        blur_sigma_px: sd of the Gaussian detector PSF in pixels (0 = none).
        gain_sigma: relative sd of the per-image detector gain.
        offset_sigma: sd of the per-exposure dark offset (I/I0 units).
        fixed_pattern_gain_sigma: relative sd of the per-pixel residual gain pattern.
        fixed_pattern_offset_sigma: sd of the per-pixel residual offset pattern (I/I0 units).
        dead_pixel_fraction: fraction of detector pixels that read 0.
        be_window_mm: tube beryllium window (mm).
        al_filter_mm: added aluminium filter (mm).
        scintillator_mm: CsI scintillator thickness (mm).
        energy_bin_kev: width of the energy bins of the spectral integration (keV).
        instruments: number of instrument units imaging the dataset, one drawn per specimen (see module
            docstring); 1 = the one detector ``detector_seed`` names.
        tolerances: declared instrument tolerances ``{key: [low, high]}`` (keys of
            :data:`~alloy_mtl.physics.instrument.TOLERANCE_KEYS`, e.g. ``kv_scale: [0.97, 1.03]``,
            ``al_filter_mm: [0.7, 1.3]``); every unit's settings are drawn uniformly inside them. Empty: the
            nominal settings.
        randomise: which declared tolerances the units draw (None: all of them; empty: none, every unit at the
            nominal settings, the tolerances then only declare the instrument's specification to the robustness
            suite and the physics ceiling).
    """

    seed: int = 0
    detector_seed: int | None = None
    n_images: int = 1000
    image_size: int = 32
    kv: tuple[float, ...] = (40.0, 50.0, 80.0)
    reference_kv: float = 50.0
    imbalance_ratio: float = 50.0
    class_order: tuple[str, ...] = DEFAULT_CLASS_ORDER
    min_images_per_class: int = 8
    images_per_specimen: int = 4
    wedge_thickness_mm: tuple[float, float] = (0.5, 8.0)
    wedge_length_mm: float = 70.0
    field_of_view_mm: float = 20.0
    wedge_slope_sigma: float = 0.003
    composition_spread: float = 0.5
    dose: float = 20000.0
    drift: float = 0.005
    heel: float = 0.1
    heel_jitter: float = 0.2
    scatter_fraction: float = 0.03
    scatter_width: float = 0.5
    blur_sigma_px: float = 0.7
    gain_sigma: float = 0.002
    offset_sigma: float = 0.0002
    fixed_pattern_gain_sigma: float = 0.005
    fixed_pattern_offset_sigma: float = 0.0002
    dead_pixel_fraction: float = 0.002
    be_window_mm: float = 1.0
    al_filter_mm: float = 1.0
    scintillator_mm: float = 0.2
    energy_bin_kev: float = 0.5
    instruments: int = 1
    tolerances: Tolerances = ()
    randomise: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tolerances", parse_tolerances(self.tolerances))
        if self.randomise is not None:
            object.__setattr__(self, "randomise", tuple(str(key) for key in np.atleast_1d(self.randomise)))
        object.__setattr__(self, "kv", tuple(float(v) for v in np.atleast_1d(self.kv)))
        object.__setattr__(self, "class_order", tuple(str(a) for a in self.class_order))
        object.__setattr__(self, "wedge_thickness_mm", tuple(float(v) for v in self.wedge_thickness_mm))
        self._validate()

    def _validate(self) -> None:  # noqa: C901, PLR0912 (one check per setting, every problem collected)
        def fail(name: str, expected: str) -> None:
            raise ValueError(f"SimulationConfig.{name} must be {expected}, got {getattr(self, name)!r}")

        for name in (
            "n_images",
            "image_size",
            "images_per_specimen",
            "min_images_per_class",
            "seed",
            "instruments",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                fail(name, "an integer")
        if self.n_images < 1:
            fail("n_images", ">= 1")
        if self.image_size < 4:
            fail("image_size", ">= 4")
        if self.images_per_specimen < 1:
            fail("images_per_specimen", ">= 1")
        if self.instruments < 1:
            fail("instruments", ">= 1")
        if self.randomise is not None and set(self.randomise) - {key for key, _, _ in self.tolerances}:
            fail("randomise", f"keys of the declared tolerances {[key for key, _, _ in self.tolerances]}")
        if self.min_images_per_class < 1:
            fail("min_images_per_class", ">= 1")
        if not self.kv or any(not 10.0 < v <= 450.0 for v in self.kv):
            fail("kv", "a non-empty list of tube voltages in (10, 450] kV")
        if not 10.0 < self.reference_kv <= 450.0:
            fail("reference_kv", "a tube voltage in (10, 450] kV")
        if not self.imbalance_ratio >= 1.0:
            fail("imbalance_ratio", ">= 1")
        if not self.class_order or len(set(self.class_order)) != len(self.class_order):
            fail("class_order", f"a non-empty list of distinct alloys from {ALLOYS}")
        for alloy in self.class_order:
            get_alloy(alloy)
        if (
            len(self.wedge_thickness_mm) != 2
            or not 0.0 < self.wedge_thickness_mm[0] < self.wedge_thickness_mm[1]
        ):
            fail("wedge_thickness_mm", "(thin end, thick end) with 0 < thin < thick")
        if not 0.0 < self.field_of_view_mm < self.wedge_length_mm:
            fail("field_of_view_mm", "> 0 and < wedge_length_mm")
        if not self.dose > 0:
            fail("dose", "> 0 (inf for no photon noise)")
        for name in (
            "wedge_slope_sigma",
            "composition_spread",
            "drift",
            "heel",
            "heel_jitter",
            "scatter_fraction",
            "blur_sigma_px",
            "gain_sigma",
            "offset_sigma",
            "fixed_pattern_gain_sigma",
            "fixed_pattern_offset_sigma",
            "be_window_mm",
            "al_filter_mm",
        ):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                fail(name, "a finite number >= 0")
        if not 0.0 <= self.dead_pixel_fraction < 0.5:
            fail("dead_pixel_fraction", "in [0, 0.5)")
        if not self.heel < 1.0:
            fail("heel", "in [0, 1)")
        for name in ("scatter_width", "scintillator_mm", "energy_bin_kev"):
            if not getattr(self, name) > 0:
                fail(name, "> 0")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> SimulationConfig:
        """Build a config from a parameter mapping (e.g. Kedro parameters); unknown keys raise ValueError."""
        params = dict(params or {})
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown SimulationConfig key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
            )
        return cls(**params)

    @property
    def detector_unit(self) -> int:
        """Seed of the detector unit that images the data: ``detector_seed``, or ``seed`` when it is None."""
        return self.seed if self.detector_seed is None else self.detector_seed

    @property
    def kv_label(self) -> str:
        """Channel voltages as the metadata ``kv`` string, e.g. "40,50,80"."""
        return ",".join(f"{v:g}" for v in self.kv)

    @property
    def nominal_slope(self) -> float:
        """Nominal wedge slope (mm of thickness per mm along the wedge)."""
        thin, thick = self.wedge_thickness_mm
        return (thick - thin) / self.wedge_length_mm

    @property
    def randomised_tolerances(self) -> Tolerances:
        """The declared tolerances the instrument units draw their settings inside (``randomise``)."""
        if self.randomise is None:
            return self.tolerances
        return tuple(t for t in self.tolerances if t[0] in self.randomise)

    def column_offsets_mm(self) -> np.ndarray:
        """Position of each image column's centre relative to the image centre, along the wedge (mm)."""
        size = self.image_size
        return ((np.arange(size) + 0.5) / size - 0.5) * self.field_of_view_mm


def class_counts(
    n_images: int, imbalance_ratio: float, order: Sequence[str], minimum: int = 1
) -> dict[str, int]:
    """Images per class for an exponential long-tail profile n_i = n_max * ratio^(-i / (K - 1)).

    ``order`` lists classes head -> tail. Counts are rounded by largest remainder so they sum to ``n_images``,
    then every class is raised to at least ``minimum`` (the total may then exceed ``n_images`` slightly).
    """
    order = [str(a) for a in order]
    if not order or len(set(order)) != len(order):
        raise ValueError(f"order must be a non-empty list of distinct classes, got {order!r}")
    if not imbalance_ratio >= 1:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio!r}")
    if n_images < len(order):
        raise ValueError(f"n_images ({n_images}) must be >= the number of classes ({len(order)})")
    k = len(order)
    exponents = np.arange(k) / (k - 1) if k > 1 else np.zeros(1)
    weights = float(imbalance_ratio) ** (-exponents)
    ideal = n_images * weights / weights.sum()
    counts = np.floor(ideal).astype(int)
    remainder_order = np.argsort(-(ideal - counts), kind="stable")
    counts[remainder_order[: n_images - counts.sum()]] += 1
    counts = np.maximum(counts, minimum)
    return {alloy: int(n) for alloy, n in zip(order, counts, strict=True)}


@dataclass(frozen=True)
class ChannelWeights:
    """Spectral weights of the channels: transmission and noise integrals over energy.

    Attributes:
        energies_kev: energy bin centres (keV).
        mean: (C, E) weights w_c(E) with T_c = sum_E mean[c] exp(-mu t) (sum_E mean[c] = 1).
        var: (C, E) weights with var(I/I0) = sum_E var[c] exp(-mu t) / dose (photon noise per pixel).
    """

    energies_kev: np.ndarray
    mean: np.ndarray
    var: np.ndarray


def channel_weights(
    config: SimulationConfig, kvs: Sequence[float], energies: np.ndarray | None = None
) -> ChannelWeights:
    """Detector-weighted spectra of tube voltages ``kvs`` on ``energies`` (default: the config's energy grid,
    up to its highest kV)."""
    if energies is None:
        energies = energy_grid(max(*config.kv, config.reference_kv), config.energy_bin_kev)
    detector = detector_response(energies, config.scintillator_mm)
    means, variances = [], []
    for kv in kvs:
        photons = tube_spectrum(kv, energies, config.be_window_mm, config.al_filter_mm).photons
        open_signal = float(np.sum(photons * detector.mean_weight))
        means.append(photons * detector.mean_weight / open_signal)
        variances.append(photons * detector.var_weight / open_signal**2)
    return ChannelWeights(energies, np.array(means), np.array(variances))


@dataclass(frozen=True)
class InstrumentUnit:
    """One instrument unit of a dataset: its detector and its beam and detector settings.

    Attributes:
        index: the unit's number in the dataset (0: the unit ``detector_seed`` names).
        config: the dataset's config with this unit's settings applied (one unit, no tolerances).
        settings: the drawn settings (tolerance key -> value); empty for the nominal instrument.
        detector: seed sequence of the unit's fixed pattern (spawn from a copy: spawning counts children).
        weights: the unit's channel spectral weights on the dataset's energy grid.
    """

    index: int
    config: SimulationConfig
    settings: dict[str, float]
    detector: np.random.SeedSequence = field(repr=False)
    weights: ChannelWeights = field(repr=False)

    def fixed_pattern(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(gain (C, H, W), offset (C, H, W), dead (H, W) bool) of the unit's detector."""
        config = self.config
        rng = np.random.default_rng(np.random.SeedSequence(self.detector.entropy).spawn(3)[1])
        size, n_ch = config.image_size, len(config.kv)
        gain = 1.0 + config.fixed_pattern_gain_sigma * rng.standard_normal((n_ch, size, size))
        offset = config.fixed_pattern_offset_sigma * rng.standard_normal((n_ch, size, size))
        dead = np.zeros(size * size, dtype=bool)
        dead[rng.choice(size * size, int(round(config.dead_pixel_fraction * size * size)), replace=False)] = (
            True
        )
        return gain, offset, dead.reshape(size, size)


def instrument_units(config: SimulationConfig) -> tuple[InstrumentUnit, ...]:
    """The dataset's instrument units, their settings drawn inside ``config.tolerances`` (none: nominal)."""
    drawn: list[tuple[np.random.SeedSequence, dict[str, float]]] = []
    for index in range(config.instruments):
        detector = detector_seed_sequence(config.detector_unit, index)
        settings_rng = np.random.default_rng(np.random.SeedSequence(detector.entropy).spawn(4)[3])
        drawn.append((detector, draw_settings(config.randomised_tolerances, settings_rng)))
    configs = [
        dataclasses.replace(
            config, instruments=1, tolerances=(), randomise=None, **instrument_changes(config, settings)
        )
        for _, settings in drawn
    ]
    energies = energy_grid(max(*(max(c.kv) for c in configs), config.reference_kv), config.energy_bin_kev)
    return tuple(
        InstrumentUnit(
            index, unit_config, settings, detector, channel_weights(unit_config, unit_config.kv, energies)
        )
        for index, ((detector, settings), unit_config) in enumerate(zip(drawn, configs, strict=True))
    )


@dataclass(frozen=True)
class DatasetPlan:
    """Everything drawn before rendering pixels: specimens, image windows, per-exposure nuisances.

    Attributes:
        config: the configuration.
        metadata: per-image table with the contract columns (``METADATA_COLUMNS``), then the settings of the
            instrument unit that took each image (``instrument_<setting>``, ``RECORDED_SETTINGS``).
        mu: (n_images, E) linear attenuation (1/cm) of each image's specimen.
        centre_mm: (n_images,) thickness at the image centre (mm).
        slope: (n_images,) wedge slope of the image's specimen (mm per mm).
        drift, heel_residual: (n_images, C) tube current factor and residual heel amplitude per exposure.
        gain: (n_images,) detector gain; offset: (n_images, C) dark offset per exposure.
        fixed_gain, fixed_offset: (C, H, W) residual fixed pattern; dead: (H, W) bool dead-pixel mask (unit 0's).
        weights: channel spectral weights of the nominal instrument.
        instrument: (n_images,) index of the unit that imaged each image (its specimen's unit).
        units: the instrument units (:func:`instrument_units`).
    """

    config: SimulationConfig
    metadata: pd.DataFrame
    mu: np.ndarray
    centre_mm: np.ndarray
    slope: np.ndarray
    drift: np.ndarray
    heel_residual: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    fixed_gain: np.ndarray
    fixed_offset: np.ndarray
    dead: np.ndarray
    weights: ChannelWeights = field(repr=False)
    instrument: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=int))
    units: tuple[InstrumentUnit, ...] = field(repr=False, default=())

    def thickness_profiles(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Thickness (mm) of every image column, shape (n, W); constant along the image height."""
        sl = slice(start, stop)
        offsets = self.config.column_offsets_mm()
        return self.centre_mm[sl, None] + self.slope[sl, None] * offsets[None, :]

    def thickness_map(self, index: int) -> np.ndarray:
        """Full (H, W) thickness map (mm) of image ``index``."""
        profile = self.thickness_profiles(index, index + 1)[0]
        return np.broadcast_to(profile, (self.config.image_size, self.config.image_size)).copy()


def _specimen_counts(n_class: int, per_specimen: int) -> list[int]:
    full, rest = divmod(n_class, per_specimen)
    return [per_specimen] * full + ([rest] if rest else [])


def _material_counts(materials: Sequence[tuple[AlloySpec, int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for spec, n in materials:
        if (
            not isinstance(spec, AlloySpec)
            or isinstance(n, bool)
            or not isinstance(n, (int, np.integer))
            or n < 1
        ):
            raise ValueError(f"materials: expected (AlloySpec, images >= 1) pairs, got ({spec!r}, {n!r})")
        if spec.name in counts:
            raise ValueError(f"materials: {spec.name!r} is given twice")
        counts[spec.name] = int(n)
    if not counts:
        raise ValueError("materials: expected at least one (AlloySpec, images) pair")
    return counts


def plan_dataset(
    config: SimulationConfig, materials: Sequence[tuple[AlloySpec, int]] | None = None
) -> DatasetPlan:
    """Draw specimens (composition, density, slope), image windows and per-exposure nuisances.

    ``materials`` (specification, images) replaces the class profile of ``config``: the plates are then of
    those materials (e.g. ones the models never saw, ``physics.materials``), ``alloy`` naming each.
    """
    plan_seq, _, _, unit_seq = np.random.SeedSequence(config.seed).spawn(4)
    rng = np.random.default_rng(plan_seq)
    if materials is None:
        counts = class_counts(
            config.n_images, config.imbalance_ratio, config.class_order, config.min_images_per_class
        )
        specs = {alloy: get_alloy(alloy) for alloy in counts}
    else:
        counts = _material_counts(materials)
        specs = {spec.name: spec for spec, _ in materials}

    specimens: list[tuple[str, int]] = []
    for alloy, n_class in counts.items():
        specimens.extend((alloy, n) for n in _specimen_counts(n_class, config.images_per_specimen))
    specimens = [specimens[i] for i in rng.permutation(len(specimens))]

    compositions, densities, slopes = [], [], []
    for alloy, _ in specimens:
        composition = sample_composition(specs[alloy], rng, config.composition_spread)
        compositions.append(composition)
        densities.append(specimen_density(specs[alloy], composition))
        slopes.append(config.nominal_slope * (1.0 + config.wedge_slope_sigma * rng.standard_normal()))
    units = instrument_units(config)
    weights = channel_weights(config, config.kv, units[0].weights.energies_kev)
    elements, fractions = composition_matrix(compositions)
    mu_specimen = np.asarray(densities)[:, None] * (
        fractions @ mass_attenuation_table(elements, weights.energies_kev)
    )

    images_of = np.array([n for _, n in specimens])
    specimen_index = np.repeat(np.arange(len(specimens)), images_of)
    rank = np.concatenate([np.arange(n) for n in images_of])
    n_total = int(images_of.sum())
    thin = config.wedge_thickness_mm[0]
    half = config.field_of_view_mm / 2.0
    strata = (rank + rng.random(n_total)) / config.images_per_specimen
    position = half + strata * (config.wedge_length_mm - 2.0 * half)
    slope = np.asarray(slopes)[specimen_index]
    centre = thin + slope * position
    offsets = config.column_offsets_mm()
    mean_thickness = (centre[:, None] + slope[:, None] * offsets[None, :]).mean(axis=1)

    n_ch = len(config.kv)
    drift = 1.0 + config.drift * rng.standard_normal((n_total, n_ch))
    heel_residual = config.heel * config.heel_jitter * rng.standard_normal((n_total, n_ch))
    gain = 1.0 + config.gain_sigma * rng.standard_normal(n_total)
    offset = config.offset_sigma * rng.standard_normal((n_total, n_ch))

    nominal = InstrumentUnit(0, config, {}, detector_seed_sequence(config.detector_unit), weights)
    fixed_gain, fixed_offset, dead = nominal.fixed_pattern()
    specimen_unit = np.random.default_rng(unit_seq).integers(0, config.instruments, len(specimens))

    reference = channel_weights(config, [config.reference_kv], weights.energies_kev).mean[0]
    thickness_cm = mean_thickness / 10.0
    transmission = np.exp(-mu_specimen[specimen_index] * thickness_cm[:, None]) @ reference
    absorption = -np.log(transmission) / thickness_cm

    width = max(6, len(str(n_total - 1)))
    metadata = pd.DataFrame(
        {
            "image_id": [f"gen-{i:0{width}d}" for i in range(n_total)],
            "specimen_id": [f"spec-{s:05d}" for s in specimen_index],
            "alloy": [specimens[s][0] for s in specimen_index],
            "thickness_mm": mean_thickness,
            "absorption": absorption,
            "kv": config.kv_label,
            "source": "generated",
            "path": "",
        },
        columns=list(METADATA_COLUMNS),
    )
    image_unit = specimen_unit[specimen_index]
    recorded = pd.DataFrame([recorded_settings(config, unit.settings) for unit in units]).iloc[image_unit]
    for key in RECORDED_SETTINGS:
        metadata[INSTRUMENT_COLUMN_PREFIX + key] = recorded[key].to_numpy()
    return DatasetPlan(
        config=config,
        metadata=metadata,
        mu=mu_specimen[specimen_index],
        centre_mm=centre,
        slope=slope,
        drift=drift,
        heel_residual=heel_residual,
        gain=gain,
        offset=offset,
        fixed_gain=fixed_gain,
        fixed_offset=fixed_offset,
        dead=dead,
        weights=weights,
        instrument=image_unit,
        units=units,
    )


def blur_kernel(sigma_px: float) -> np.ndarray:
    """The detector blur's 1-D Gaussian kernel of ``sigma_px`` (> 0) as ``gaussian_filter1d`` applies it (unit sum)."""
    delta = np.zeros(int(8 * sigma_px) * 2 + 3)
    delta[delta.size // 2] = 1.0
    return gaussian_filter1d(delta, sigma_px)


def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix M such that ``profile @ M.T`` is ``gaussian_filter1d(profile, sigma, mode="nearest")``."""
    if sigma <= 0:
        return np.eye(size)
    return gaussian_filter1d(np.eye(size), sigma, axis=0, mode="nearest")


def scatter_signal(primary: np.ndarray, fraction: float, width_px: float) -> np.ndarray:
    """Scatter (I/I0 units) for primary transmission profiles ``primary`` (..., W), spread along the last axis."""
    if fraction == 0:
        return np.zeros_like(primary)
    source = primary * -np.log(np.clip(primary, 1e-12, None))
    return fraction * (source @ gaussian_matrix(primary.shape[-1], width_px).T)


def _render(
    plan: DatasetPlan,
    rows: np.ndarray,
    unit: InstrumentUnit,
    pattern: tuple[np.ndarray, np.ndarray, np.ndarray],
    noise: np.ndarray | None,
) -> np.ndarray:
    """Images ``rows`` of the plan as instrument ``unit`` records them; ``noise`` the rows' standard normals."""
    config, weights = unit.config, unit.weights
    fixed_gain, fixed_offset, dead = pattern
    size = config.image_size
    thickness_cm = (plan.centre_mm[rows, None] + plan.slope[rows, None] * config.column_offsets_mm()) / 10.0
    attenuation = np.exp(-thickness_cm[:, :, None] * plan.mu[rows, None, :])  # (n, W, E)
    primary = np.einsum("nwe,ce->ncw", attenuation, weights.mean)
    photon_var = np.einsum("nwe,ce->ncw", attenuation, weights.var)
    scatter = scatter_signal(primary, config.scatter_fraction, config.scatter_width * size)
    column_mean = primary + scatter
    column_var = photon_var + scatter * weights.var.sum(axis=1)[None, :, None]

    ramp = (np.arange(size) + 0.5) / size - 0.5
    heel_ref = 1.0 + config.heel * ramp
    heel_raw = heel_ref + plan.heel_residual[rows, :, None] * ramp  # (n, C, H)
    photons = plan.drift[rows, :, None] * heel_raw
    row_mean = (photons / heel_ref).astype(np.float32)
    images = row_mean[:, :, :, None] * column_mean.astype(np.float32)[:, :, None, :]
    if noise is not None:
        row_var = (photons / heel_ref**2 / config.dose).astype(np.float32)
        std = np.sqrt(row_var[:, :, :, None] * column_var.astype(np.float32)[:, :, None, :])
        images += std * noise
    if config.blur_sigma_px > 0:
        images = gaussian_filter(
            images, sigma=(0, 0, config.blur_sigma_px, config.blur_sigma_px), mode="nearest"
        )
    images *= (plan.gain[rows, None, None, None] * fixed_gain[None]).astype(np.float32)
    images += (plan.offset[rows, :, None, None] + fixed_offset[None]).astype(np.float32)
    images[:, :, dead] = 0.0
    return images


def _render_chunk(
    plan: DatasetPlan, start: int, stop: int, rng: np.random.Generator, patterns: dict[int, tuple]
) -> np.ndarray:
    config = plan.config
    shape = (stop - start, len(config.kv), config.image_size, config.image_size)
    noise = rng.standard_normal(shape, dtype=np.float32) if np.isfinite(config.dose) else None
    units = plan.instrument[start:stop]
    images = np.empty(shape, dtype=np.float32)
    for index in np.unique(units):
        unit = plan.units[index]
        if index not in patterns:
            patterns[index] = unit.fixed_pattern()
        local = np.flatnonzero(units == index)
        images[local] = _render(
            plan, start + local, unit, patterns[index], None if noise is None else noise[local]
        )
    return images


def simulate_dataset(
    config: SimulationConfig,
    out: np.ndarray | None = None,
    materials: Sequence[tuple[AlloySpec, int]] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Simulate the wedge radiograph dataset described by ``config``.

    Args:
        config: simulation parameters.
        out: optional preallocated array (e.g. ``np.memmap``) of shape (N, C, H, W) with N = the planned image
            count (``len(plan_dataset(config).metadata)``); images are written chunk by chunk so the dataset
            never needs to sit whole in RAM. The result is identical with or without ``out``.
        materials: optional (specification, images) pairs imaged instead of the config's alloys
            (:func:`plan_dataset`); the config still gives the instrument, geometry and noise.

    Returns:
        (images, metadata): float32 images (N, C, H, W) of flat-field normalised I/I0 (``out`` itself when
        given) and the per-image metadata: the contract columns, then the recorded instrument settings
        (``instrument_<setting>``).
    """
    plan = plan_dataset(config, materials)
    n_images = len(plan.metadata)
    shape = (n_images, len(config.kv), config.image_size, config.image_size)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {shape} for this config")
    chunk_seqs = np.random.SeedSequence(config.seed).spawn(3)[2].spawn((n_images + _CHUNK - 1) // _CHUNK)
    patterns: dict[int, tuple] = {}
    for k, seq in enumerate(chunk_seqs):
        start, stop = k * _CHUNK, min((k + 1) * _CHUNK, n_images)
        out[start:stop] = _render_chunk(plan, start, stop, np.random.default_rng(seq), patterns)
    logger.info(
        "simulated %d images of shape %s (%s kV, %d instrument unit(s))",
        n_images,
        shape[1:],
        config.kv_label,
        config.instruments,
    )
    return out, plan.metadata.copy()
