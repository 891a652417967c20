"""The typed training parameters: one frozen model mirroring ``conf/base/parameters_training.yml``.

Every default of a training setting lives here and nowhere else. A Kedro node parses the merged YAML
(``training`` with the architecture's ``train_options`` laid over it) once with :func:`parse_training_params`;
unknown keys and bad values fail before any work, each named by its YAML path. The trainer reads the
:class:`TrainerSettings` part (``trainer_settings.py``); the recipe (``recipe.py``) reads the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from alloy_mtl.config.base import deep_merge, parse_params
from alloy_mtl.mtl.models.backbones import BACKBONES, canonical_activation
from alloy_mtl.mtl.models.input_transform import TRANSFORMS
from alloy_mtl.mtl.tasks import TaskSpec, parse_tasks
from alloy_mtl.mtl.trainer_settings import TrainerSettings

#: Model options handled by the model itself (the head), beside the backbone's own options.
HEAD_OPTIONS = ("hidden", "dropout", "image_gate")


class TrainingParams(TrainerSettings):
    """One architecture's complete training configuration."""

    arch: str
    """Architecture by name from the backbone registry (``resnet18``, ``resnet34``, ``resnet50``,
    ``vgg16``, ``efficientnet_b0``, ``fnn``)."""
    tasks: dict[str, dict[str, Any]]
    """Task name -> its spec (kind, target, classes, loss, weight, ``enabled``); see the training guide."""
    batch_size: int = Field(32, ge=1)
    """Images per batch, per process under DDP."""
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes (0 loads in the training process)."""
    input_transform: str = "neg_log"
    """Input representation computed inside the model: ``neg_log``, ``log_attenuation``, ``dual_energy``,
    ``wedge_profile``, ``wedge_fit`` (the detector-robust one: see ``alloy_mtl.mtl.models.input_transform``) or
    ``identity``."""
    resume: Literal["auto"] | bool = "auto"
    """``auto`` resumes from ``checkpoints/last.pt`` when it exists and matches the configuration; true
    requires it; false starts afresh."""
    checkpoint_root: str = "data/06_models"
    """Folder of each architecture's checkpoints (``<checkpoint_root>/<arch>/checkpoints``) and
    ``pbt_best.yml``."""
    max_train_images: int | None = Field(None, ge=1)
    """Train on a random subset of at most this many training images (null: all)."""
    summary_warmup_epochs: int = Field(0, ge=0)
    """Epochs fitting a gated model's fusion and heads on all train images' summary first (``summary_warmup``)."""
    image_size: int | None = Field(None, ge=1)
    """Resize images to this many pixels square before the model (null: the data's size)."""
    bad_pixels: Literal["none", "neighbour_median"] = "none"
    """Bad-pixel correction before the resize, the same in training, evaluation, serving and folder
    inference (recorded in the model): ``neighbour_median`` replaces dead, hot and non-finite pixels by the
    median of their neighbours (``alloy_mtl.mtl.loading.preprocess``); ``none`` (models of earlier releases)
    leaves them."""
    instrument_conditioning: Literal["auto"] | bool = "auto"
    """Condition the model on the instrument's settings (``alloy_mtl.mtl.models.conditioning``): ``auto`` when
    the metadata records settings (``instrument_<setting>`` columns) that vary over the training images, as
    the generator's drawn tolerances do; ``true`` requires them; ``false`` never. A conditioned model is told
    the instrument at prediction time: fitted from the batch (the evaluation set, the robustness suite),
    given in the request, or the training images' typical one."""
    wedge_summary: bool = False
    """Join the wedge's global summary (the coefficients of the least-squares quadratic through each channel's
    attenuation profile, standardised) to the backbone's features before the heads
    (``alloy_mtl.mtl.models.conditioning.WedgeSummary``)."""
    calibration: Literal["temperature", "none"] = "temperature"
    """After training, fit one temperature per classification head on the validation split (temperature
    scaling, ``alloy_mtl.mtl.training.calibration``) so the model's probabilities match how often it is right;
    the temperature travels inside the model. ``none`` keeps the raw softmax."""
    ood: Literal["mahalanobis", "none"] = "mahalanobis"
    """After training, fit the model's unknown-material score: class means and a shared covariance of its
    features on the training split, the score's quantiles on the validation split
    (``alloy_mtl.mtl.models.ood``); a served model then answers ``unknown`` above the threshold for the
    requested rate of rejected known images. ``none`` ships it unfitted (every image answered)."""
    conformal_coverage: float | None = Field(0.9, gt=0, lt=1)
    """After calibration, fit split-conformal prediction sets (class-conditional: every alloy, the tail too,
    covered at this rate on data like the validation split) and intervals for the regression targets on the
    validation split (``alloy_mtl.mtl.models.conformal``); served as ``alloy_set`` and ``<target>_low`` /
    ``_high``. null: none. Where they are fitted: ``conformal_set``."""
    conformal_set: Literal["auto", "validation_split", "generated", "generated_tolerances"] = "auto"
    """What the conformal sets and intervals are fitted on. ``generated``: a generated, balanced set
    (``conformal_images`` fresh specimens, ``CONFORMAL_UNITS`` validation detector units) at the instrument the
    simulation describes (``generation``: the nominal one, or the lab's after ``calibrate_instrument``), so
    every alloy is covered at the rate on other detector units of that instrument (the validation split holds a
    dozen images of a tail alloy and every unit of the training tolerances); ``generated_tolerances``: the same
    set at settings drawn inside the declared tolerances (covered on average over them, over-covered at their
    centre); ``validation_split``: the split, as models of earlier releases; ``auto``: ``generated`` with
    generated data, the validation split with a lab's."""
    conformal_images: int = Field(5000, ge=100)
    """Images of the generated conformal set (``conformal_set: generated*``)."""
    class_balanced_sampler: bool = False
    """Draw batches so that the first classification task's classes come equally often."""
    distributed: Literal["auto"] | bool = "auto"
    """Torch DDP over the processes torchrun started: ``auto`` when there are several, ``true`` requires
    it."""
    data_on_device: Literal["auto"] | bool = "auto"
    """Keep each split on the training device and batch it there (``auto``: on CUDA when it fits easily)."""
    prefetch_factor: int = Field(2, ge=1)
    """Batches each loader worker prepares ahead (with ``num_workers`` > 0)."""
    activation: str | None = None
    """Activation of the backbone and heads (null: the architecture's own)."""
    pretrained: bool = False
    """Start from timm's pretrained weights (needs the network to download them)."""
    model_options: dict[str, Any] = {}
    """Options of the backbone's constructor and of the head (``hidden``, ``dropout``)."""
    start_from_pbt: bool = False
    """Start from ``<checkpoint_root>/<arch>/pbt_best.yml`` (optimizer, lr, weight decay found by
    ``tune_<arch>``) instead of the table's values; the file must exist."""

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        return BACKBONES.check(value)

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value: str | None) -> str | None:
        return None if value is None else canonical_activation(value)

    @field_validator("input_transform")
    @classmethod
    def _known_transform(cls, value: str) -> str:
        if value not in TRANSFORMS:
            raise ValueError(f"unknown input transform {value!r}; expected one of {list(TRANSFORMS)}")
        return value

    @field_validator("tasks")
    @classmethod
    def _valid_tasks(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, spec in value.items():
            if not isinstance(spec, Mapping):
                raise ValueError(f"task '{name}': expected a mapping of fields, got {type(spec).__name__}")
            enabled = spec.get("enabled", True)
            if not isinstance(enabled, bool):
                raise ValueError(f"task '{name}', field 'enabled': expected true or false, got {enabled!r}")
        parse_tasks({name: _without_enabled(spec) for name, spec in value.items()})
        if not any(spec.get("enabled", True) for spec in value.values()):
            raise ValueError("every task is disabled; enable at least one")
        return value

    @field_validator("model_options")
    @classmethod
    def _known_model_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        arch = info.data.get("arch")
        if arch is None:  # the architecture itself is wrong: reported on its own
            return value
        allowed = {*BACKBONES.accepted(arch), *HEAD_OPTIONS}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for {arch}; allowed: {sorted(allowed)}")
        if not isinstance(value.get("image_gate", False), bool):  # text "false" would open it
            raise ValueError(f"image_gate: expected true or false, got {value['image_gate']!r}")
        return value

    @model_validator(mode="after")
    def _warmup_needs_gate(self) -> TrainingParams:
        if self.summary_warmup_epochs and self.model_options.get("image_gate") is not True:
            raise ValueError(
                f"summary_warmup_epochs: {self.summary_warmup_epochs} needs model_options.image_gate: true (it "
                "trains the gate-closed model); set summary_warmup_epochs: 0 for a model without the gate"
            )
        return self

    @model_validator(mode="after")
    def _monitor_is_an_epoch_metric(self) -> TrainingParams:
        metric = self.monitor.metric
        if not metric.startswith(("train_", "val_")):
            return self  # gradient diagnostics and custom callbacks' metrics are checked by the trainer
        known = self.epoch_metrics()
        if metric not in known:
            raise ValueError(
                f"monitor.metric: {metric!r} is not a metric of the enabled tasks; choose one of {sorted(known)}"
            )
        return self

    def epoch_metrics(self) -> set[str]:
        """The per-epoch ``train_``/``val_`` metric names the enabled tasks produce (what ``monitor`` may name)."""
        known = {"train_loss", "val_loss"}
        for task in self.task_specs:
            known |= {f"train_{task.name}_loss", f"val_{task.name}_loss"}
            if task.is_classification:
                known |= {f"train_{task.name}_acc", f"val_{task.name}_acc", f"val_{task.name}_ap"}
            else:
                known.add(f"val_{task.name}_mae")
        return known

    @property
    def task_specs(self) -> list[TaskSpec]:
        """The enabled tasks, parsed (a configuration switches a task off with ``enabled: false``)."""
        return parse_tasks(self.enabled_tasks)

    @property
    def enabled_tasks(self) -> dict[str, dict[str, Any]]:
        """Raw specs of the enabled tasks, without the ``enabled`` flag (what a model bundle records)."""
        return {n: _without_enabled(s) for n, s in self.tasks.items() if s.get("enabled", True)}

    def trainer_settings(self) -> TrainerSettings:
        """The part the trainer reads."""
        return TrainerSettings.model_validate(self.model_dump(include=set(TrainerSettings.model_fields)))


def _without_enabled(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "enabled"}


def parse_training_params(
    params: Mapping[str, Any] | TrainingParams, overrides: Mapping[str, Any] | None = None, arch: str = ""
) -> TrainingParams:
    """Parse ``params`` (the shared ``training`` section) with ``overrides`` (``<arch>.train_options``) laid over it.

    Problems are named by the YAML place they come from: ``training.epochz: unknown key; did you mean
    epochs?`` or ``resnet18.train_options.lr: ...``.

    Raises:
        alloy_mtl.config.ParameterError: every unknown key and invalid value, listed.
    """
    if isinstance(params, TrainingParams) and not overrides:
        return params
    base = params.model_dump() if isinstance(params, TrainingParams) else dict(params)
    overrides = dict(overrides or {})
    merged = deep_merge(base, overrides)
    option_root = f"{arch or overrides.get('arch', '<arch>')}.train_options"

    def where(dotted: str) -> str:
        node: Any = overrides
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return f"training.{dotted}"
            node = node[part]
        return f"{option_root}.{dotted}"

    return parse_params(TrainingParams, merged, "training", where)
