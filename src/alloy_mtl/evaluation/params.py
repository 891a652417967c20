"""Typed parameters of the evaluation pipelines (``conf/base/parameters_evaluation.yml``)."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)

from alloy_mtl.config.base import ParamsModel
from alloy_mtl.physics.instrument import SCALE_SUFFIX
from alloy_mtl.physics.simulator import SimulationConfig


class BootstrapParams(ParamsModel):
    """Specimen-level bootstrap of the headline metrics' intervals (0 resamples switches it off)."""

    n_resamples: int = Field(1000, ge=0)
    seed: int = 0
    level: float = Field(0.95, gt=0, lt=1)


#: Seeds of the detector units of the default ``unseen_detector_<n>`` conditions. Validation detector seeds
#: that later choose models or recipes (domain randomisation, the promotion gate) must differ from these, and
#: from the training data's, or the suite stops measuring detectors no choice has seen.
UNSEEN_DETECTOR_SEEDS: tuple[int, ...] = (910_001, 910_002, 910_003)
#: Detector units that choose recipes and levers (benchmarks/bench_robust_levers.py): none of the suite's.
VALIDATION_DETECTOR_SEEDS: tuple[int, ...] = (920_001, 920_002, 920_003)
#: The headline evaluation set's detector unit: neither the training data's nor the suite's nor validation's.
EVALUATION_DETECTOR_SEED = 930_001


class EvaluationSetParams(ParamsModel):
    """A large simulated evaluation set of fresh specimens, balanced across alloys (generated data only).

    The split's test set has a handful of tail specimens; this set is what ranks models. Its specimens come
    from a seed of their own, so none of them is in the training data, and by default it is imaged by a
    detector unit of its own at the nominal beam, so none of its pixels' fixed pattern is either: a lab's
    detector is never the one a model was trained on.
    """

    enabled: bool = True
    n_images: int = Field(3000, ge=0)
    seed_offset: int = 1_000_003
    images_per_specimen: int = Field(3, ge=1)
    detector_seed: int | None = EVALUATION_DETECTOR_SEED
    """Seed of the detector unit imaging the set; null: the training data's own unit (the same-detector
    reference of earlier releases). It may not name the training data's unit explicitly."""


class InstrumentOverrides(ParamsModel):
    """How one robustness condition's instrument differs from the evaluation set's (nominal) instrument.

    Every key is a :class:`~alloy_mtl.physics.simulator.SimulationConfig` field that describes the
    instrument (beam, detector, acquisition), set to an absolute value, or ``<field>_scale``, a factor on the
    nominal value. Specimen fields (seed, counts, wedge, composition, image size, ``reference_kv``) are refused:
    every condition images the same specimens, so its labels are the evaluation set's.
    """

    detector_seed: int | None = None
    """Seed of the detector unit's fixed pattern (per-pixel gain and offset, dead pixels)."""
    kv: list[float] | None = None
    """Tube voltage of each channel (kV); as many channels as the training data."""
    kv_scale: float | None = Field(None, gt=0)
    """Factor on every channel's tube voltage (1.02: the tube runs 2% high); the ``absorption`` label keeps
    its nominal ``reference_kv``."""
    dose: float | None = Field(None, gt=0)
    """Incident photons per pixel in the open beam."""
    dose_scale: float | None = Field(None, gt=0)
    """Factor on the nominal dose (0.5: half the exposure)."""
    drift: float | None = Field(None, ge=0)
    """Relative sd of the tube current per exposure."""
    heel: float | None = Field(None, ge=0, lt=1)
    """Edge-to-edge anode heel amplitude."""
    heel_jitter: float | None = Field(None, ge=0)
    """Relative sd of the per-exposure heel amplitude."""
    scatter_fraction: float | None = Field(None, ge=0)
    """Amplitude of the scatter kernel."""
    scatter_fraction_scale: float | None = Field(None, ge=0)
    """Factor on the nominal scatter amplitude (2: twice the scatter)."""
    scatter_width: float | None = Field(None, gt=0)
    """Sd of the scatter kernel as a fraction of the image width."""
    blur_sigma_px: float | None = Field(None, ge=0)
    """Sd of the detector PSF (pixels)."""
    gain_sigma: float | None = Field(None, ge=0)
    """Relative sd of the per-image detector gain."""
    offset_sigma: float | None = Field(None, ge=0)
    """Sd of the per-exposure dark offset."""
    fixed_pattern_gain_sigma: float | None = Field(None, ge=0)
    """Relative sd of the per-pixel residual gain pattern (0: none)."""
    fixed_pattern_offset_sigma: float | None = Field(None, ge=0)
    """Sd of the per-pixel residual offset pattern (0: none)."""
    dead_pixel_fraction: float | None = Field(None, ge=0, lt=0.5)
    """Fraction of dead detector pixels (0: none)."""
    be_window_mm: float | None = Field(None, ge=0)
    """Tube beryllium window (mm)."""
    al_filter_mm: float | None = Field(None, ge=0)
    """Added aluminium filter (mm)."""
    scintillator_mm: float | None = Field(None, gt=0)
    """CsI scintillator thickness (mm)."""

    @model_validator(mode="before")
    @classmethod
    def _instrument_fields_only(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        simulation = {f.name for f in dataclasses.fields(SimulationConfig)}
        problems = []
        for key in data:
            if key in cls.model_fields:
                continue
            if key in simulation or key.removesuffix(SCALE_SUFFIX) in simulation:
                problems.append(
                    f"{key!r} is a SimulationConfig field of the specimens or the rendering, not of the instrument"
                )
            else:
                close = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(f"{key!r} is not a SimulationConfig field{hint}")
        if problems:
            raise ValueError(f"{'; '.join(problems)} (instrument settings: {', '.join(cls.model_fields)})")
        return data

    @model_validator(mode="after")
    def _absolute_or_scale(self) -> InstrumentOverrides:
        both = [
            name
            for name in type(self).model_fields
            if name.endswith(SCALE_SUFFIX)
            and getattr(self, name) is not None
            and getattr(self, name.removesuffix(SCALE_SUFFIX)) is not None
        ]
        if both:
            raise ValueError(f"set either an absolute value or a scale, not both: {', '.join(both)}")
        return self

    @model_serializer(mode="wrap")
    def _only_the_keys_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A condition is what it changes: the reference, the logged parameters and dumps show just that.
        return {key: value for key, value in handler(self).items() if value is not None}

    def overrides(self) -> dict[str, Any]:
        """The keys set, as given (absolute values and ``<field>_scale`` factors)."""
        return self.model_dump()


def default_conditions() -> dict[str, InstrumentOverrides]:
    """The default instrument conditions of the robustness suite (see :class:`RobustnessParams`)."""
    unseen = {
        f"unseen_detector_{n}": {"detector_seed": seed} for n, seed in enumerate(UNSEEN_DETECTOR_SEEDS, 1)
    }
    conditions: dict[str, dict[str, Any]] = {
        "same_detector": {},
        **unseen,
        "perfect_detector": {
            "fixed_pattern_gain_sigma": 0.0,
            "fixed_pattern_offset_sigma": 0.0,
            "dead_pixel_fraction": 0.0,
        },
        "kv_x1.02": {"kv_scale": 1.02},
        "al_filter_1.3mm": {"al_filter_mm": 1.3},
        "scintillator_0.3mm": {"scintillator_mm": 0.3},
        "scatter_x2": {"scatter_fraction_scale": 2.0},
        "blur_1.0px": {"blur_sigma_px": 1.0},
        "dose_x0.5": {"dose_scale": 0.5},
    }
    return {name: InstrumentOverrides(**values) for name, values in conditions.items()}


ConditionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$")]
"""A condition's name: letters, digits, ``_``, ``.`` and ``-`` (it becomes part of MLflow metric keys)."""


class RobustnessParams(ParamsModel):
    """The robustness suite: the same fresh specimens re-imaged under named instrument conditions.

    Every condition re-images the same specimens (one seed: same alloys, thicknesses, compositions, exposures'
    noise draws) with the evaluation set's instrument changed as its overrides say, so a score's change from
    the ``reference`` condition is the instrument's doing alone. Generated data only.

    The default conditions: ``same_detector`` (the training data's detector unit, the reference row),
    ``unseen_detector_1..3`` (detector units of seeds ``UNSEEN_DETECTOR_SEEDS``, which neither the training
    data nor the evaluation set use; validation detector seeds used for model selection must differ from them),
    ``perfect_detector`` (no fixed pattern, no dead pixels), and in-tolerance beam and detector changes:
    ``kv_x1.02``, ``al_filter_1.3mm`` (nominal 1.0), ``scintillator_0.3mm`` (nominal 0.2), ``scatter_x2``,
    ``blur_1.0px`` (nominal 0.7) and ``dose_x0.5``.
    """

    enabled: bool = True
    n_images: int = Field(1000, ge=0)
    """Images per condition (balanced across alloys); 0 switches the suite off."""
    seed_offset: int = 2_000_003
    """Added to the generation seed for the suite's specimens (not the training data's nor the evaluation
    set's)."""
    images_per_specimen: int = Field(3, ge=1)
    reference: str = "same_detector"
    """The condition each model's ``macro_ap_change`` is measured from."""
    n_resamples: int = Field(200, ge=0)
    """Specimen-bootstrap resamples of each model's and condition's intervals (0: no intervals); seed and
    level are ``evaluation.bootstrap``'s."""
    conditions: dict[ConditionName, InstrumentOverrides] = Field(default_factory=default_conditions)
    """Condition name -> instrument overrides. A mapping given here replaces the default conditions."""

    @model_validator(mode="after")
    def _reference_is_a_condition(self) -> RobustnessParams:
        if self.conditions and self.reference not in self.conditions:
            raise ValueError(
                f"reference {self.reference!r} is not one of the conditions {list(self.conditions)}"
            )
        if "summary" in self.conditions:
            raise ValueError("'summary' is reserved for each model's summary scores; rename that condition")
        return self


class EnsembleSelectionParams(ParamsModel):
    """How the ``ensemble_selected`` row weighs the models: chosen on the validation split only, then applied
    unchanged to the test split, the evaluation set and every robustness condition
    (``alloy_mtl.evaluation.ensemble_selection``; the choice is written to ``ensemble_selection.json``)."""

    method: Literal["greedy", "loglik", "equal"] = "greedy"
    """``greedy``: forward selection with replacement on validation macro AP (Caruana et al. 2004), started
    from the best single model, ties broken by validation log loss; ``loglik``: the non-negative weights
    that maximise the validation log-likelihood; ``equal``: every model alike (the ``ensemble_soft`` row)."""
    rounds: int = Field(20, ge=1)
    """``greedy``: models drawn at most, with replacement; a model drawn k times of the best n weighs k/n."""
    n_images: int = Field(1000, ge=0)
    """With generated data, the weights are chosen on a generated, balanced **validation set** of this many
    images: fresh specimens (``seed_offset``) imaged by ``units`` validation detector units (derived from
    ``VALIDATION_DETECTOR_SEEDS[0]``, none of the suite's or the evaluation set's) at settings drawn inside the
    declared tolerances, the conditions a lab's instrument may be in. The long-tailed validation split ranks
    models poorly (a few specimens per tail alloy, every model within a few hundredths). 0, or lab data: the
    validation split."""
    seed_offset: int = 3_000_017
    """Added to the generation seed for the validation set's specimens."""
    units: int = Field(8, ge=1)
    """Validation detector units imaging the validation set, one per specimen."""


class OodParams(ParamsModel):
    """The unknown-material evaluation: a generated set of what the models never saw (``evaluation.ood``),
    imaged by the evaluation set's instrument (generated data only)."""

    enabled: bool = True
    images_per_material: int = Field(60, ge=0)
    """Images of each other material (5 aluminium designations, 4 other materials) and synthetic family
    (open beam, blank, dark)."""


class EvaluationParams(ParamsModel):
    """Tail classes, shot-bin thresholds and calibration bins of the per-model evaluation."""

    tail_classes: list[str] = ["7075", "2017"]
    shot_thresholds: dict[str, int] = {"many": 100, "few": 20}
    class_shot_thresholds: dict[str, int] = {"many": 100, "few": 20}
    shot_bins: int | list[float] | dict[str, int | list[float]] = 50
    ece_bins: int = Field(15, ge=1)
    ensemble_regression_tolerance: float | None = Field(2.0, gt=0)
    """The ensembles average a regression target over the models whose validation MAE is at most this multiple
    of the best model's (a failed regression head is left out); null averages every model."""
    ensemble_selection: EnsembleSelectionParams = EnsembleSelectionParams()
    bootstrap: BootstrapParams = BootstrapParams()
    evaluation_set: EvaluationSetParams = EvaluationSetParams()
    ood: OodParams = OodParams()
    robustness: RobustnessParams = RobustnessParams()
