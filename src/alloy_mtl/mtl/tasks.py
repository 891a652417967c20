"""Task specifications for the multi-task model: frozen parameter models parsed from Kedro parameters.

``TaskSpec`` is the one home of a task's facts: kind, target column, class names, number of outputs, loss;
``LDSConfig`` and ``FDSConfig`` are the one home of the LDS/FDS settings and their defaults. Dataset building,
prediction, the predictions frame and evaluation ask the spec. A task entry looks like::

    thickness: {
        kind: regression,
        target: thickness_mm,
        loss: mse,
        weight: 1.0,
        lds: {enabled: true, bins: 50, kernel: gaussian, kernel_size: 5, sigma: 2.0, reweight: sqrt_inv},
        fds: {enabled: false},
    }

:func:`parse_tasks` reads the mapping ``{name: entry}`` (the YAML form, also what model bundles and
checkpoints record) and lists every problem of every task before failing, each by its dotted path
(``tasks.thickness.lds.kernel_size: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field, StrictBool, StrictInt, ValidationInfo, field_validator, model_validator

from alloy_mtl.config.base import ParameterError, ParamsModel, parse_params
from alloy_mtl.constants import ALLOYS, CLASSIFICATION, REGRESSION, TASK_KINDS
from alloy_mtl.mtl.losses.lds import KERNELS, REWEIGHTS
from alloy_mtl.mtl.losses.task_losses import LOSSES

__all__ = ["CLASSIFICATION", "REGRESSION", "TASK_KINDS", "FDSConfig", "LDSConfig", "TaskSpec", "parse_tasks"]

#: A finite int or float, not a bool or a string (the YAML's numbers as written).
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]

DEFAULT_LOSSES = {CLASSIFICATION: "cross_entropy", REGRESSION: "mse"}
"""The loss of a task that names none, by kind."""

_REWEIGHT_ALIASES = {"inverse": "inv"}
_TASK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _Smoothing(ParamsModel):
    """Settings LDS and FDS share: label bins and the kernel that smooths across them."""

    enabled: StrictBool = True
    """``false`` switches it off (the task's ``lds`` / ``fds`` is then None)."""
    bins: StrictInt = Field(50, ge=2)
    """Equal-width bins over the train labels' range."""
    kernel: str = "gaussian"
    """Smoothing kernel across bins: ``gaussian``, ``triang`` or ``laplace``."""
    kernel_size: StrictInt = Field(5, ge=1)
    """Odd window length, in bins."""
    sigma: Number = Field(2.0, gt=0)
    """Kernel width in bins (``gaussian``, ``laplace``)."""

    @field_validator("kernel")
    @classmethod
    def _known_kernel(cls, value: str) -> str:
        if value not in KERNELS:
            raise ValueError(f"unknown kernel {value!r}; expected one of {KERNELS}")
        return value

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"expected an odd integer, got {value}")
        return value


class LDSConfig(_Smoothing):
    """Label distribution smoothing (Yang et al. 2021) of one regression task: per-sample loss weights."""

    reweight: str = "sqrt_inv"
    """``inv`` (1 / smoothed density; ``inverse`` is read as ``inv``) or ``sqrt_inv`` (1 / its square root)."""

    @field_validator("reweight")
    @classmethod
    def _known_reweighting(cls, value: str) -> str:
        value = _REWEIGHT_ALIASES.get(value, value)
        if value not in REWEIGHTS:
            raise ValueError(f"unknown reweighting {value!r}; expected one of {REWEIGHTS}")
        return value


class FDSConfig(_Smoothing):
    """Feature distribution smoothing (Yang et al. 2021) of one regression task (``alloy_mtl.mtl.losses.fds``)."""

    start_epoch: StrictInt = Field(1, ge=0)
    """First epoch in which the features are recalibrated."""
    momentum: Number = Field(0.9, ge=0, lt=1)
    """Weight of the previous running statistics when an epoch's statistics are folded in."""
    clip_min: Number = Field(0.1, gt=0)
    """Lower bound of the variance ratio smoothed / running."""
    clip_max: Number = Field(10.0, gt=0)
    """Upper bound of the variance ratio smoothed / running."""

    @model_validator(mode="after")
    def _clip_range(self) -> FDSConfig:
        if self.clip_min > self.clip_max:
            raise ValueError(
                f"clip_min: expected clip_min <= clip_max, got {self.clip_min} > {self.clip_max}"
            )
        return self


class TaskSpec(ParamsModel):
    """One task of the multi-task model (an entry of ``tasks``; its key is the name)."""

    name: str
    """Task name: its key under ``tasks``, used in metric names (``val_<name>_loss``)."""
    kind: str
    """``classification`` or ``regression``."""
    target: str
    """Metadata column holding the label (default: the task's name)."""
    num_outputs: StrictInt
    """Number of classes (classification; default: the number of ``classes``), 1 for regression."""
    classes: tuple[str, ...] = ()
    """Class labels as they appear in the target column, in output order (classification; default: the five
    alloys when there are five outputs, else ``"0"``, ``"1"``, ...); empty for regression."""
    loss: str
    """A key of :data:`alloy_mtl.mtl.losses.task_losses.LOSSES` of the task's kind (default:
    ``cross_entropy`` / ``mse``)."""
    weight: Number = Field(1.0, ge=0)
    """Static task weight."""
    loss_params: dict[str, Number] = {}
    """The loss's hyper-parameters; parsed, every one the loss accepts, defaults filled in."""
    lds: LDSConfig | None = None
    """LDS settings when enabled (regression only), else None."""
    fds: FDSConfig | None = None
    """FDS settings when enabled (regression only), else None."""

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        """Fill what an entry may leave out: target, num_outputs, classes, loss.

        Where the kind itself is wrong (reported on its own), placeholders let the other fields be checked.
        """
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        kind = data.setdefault("kind", None)
        kind = kind if isinstance(kind, str) else None
        if "name" in data:  # a name that is not a string is reported on its own
            data.setdefault("target", str(data["name"]))
        classes = data.get("classes")
        no_classes = classes is None or (isinstance(classes, (list, tuple)) and not classes)
        if "num_outputs" not in data:
            if kind != CLASSIFICATION:
                data["num_outputs"] = 1
            else:
                data["num_outputs"] = None if no_classes else len(classes)
        num_outputs = data["num_outputs"]
        if kind == CLASSIFICATION and no_classes and type(num_outputs) is int:
            data["classes"] = default_classes(num_outputs)
        data.setdefault("loss", DEFAULT_LOSSES.get(kind or "", ""))
        return data

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _TASK_NAME_RE.match(value) or "__" in value:
            raise ValueError(
                f"task name {value!r}: expected letters, digits and single underscores, starting with a letter"
            )
        return value

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(f"required: one of {TASK_KINDS}")
        if value not in TASK_KINDS:
            raise ValueError(f"unknown kind {value!r}; expected one of {TASK_KINDS}")
        return value

    @field_validator("target")
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not value:
            raise ValueError(f"expected a column name, got {value!r}")
        return value

    @field_validator("num_outputs", mode="before")
    @classmethod
    def _num_outputs_given(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(
                "required for a classification task (number of classes), unless classes are listed"
            )
        return value

    @field_validator("num_outputs")
    @classmethod
    def _num_outputs_of_kind(cls, value: int, info: ValidationInfo) -> int:
        kind = info.data.get("kind")
        if kind == CLASSIFICATION and value < 2:
            raise ValueError(f"expected an integer >= 2 (the number of classes), got {value}")
        if kind == REGRESSION and value != 1:
            raise ValueError(f"a regression task has 1 output, got {value}")
        return value

    @field_validator("classes", mode="before")
    @classmethod
    def _distinct_labels(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)) or len({str(c) for c in value}) != len(value):
            raise ValueError(f"expected a list of distinct labels, got {value!r}")
        labels = tuple(str(c) for c in value)
        num_outputs = info.data.get("num_outputs")
        if labels and info.data.get("kind") == REGRESSION:
            raise ValueError("only classification tasks have classes")
        if labels and num_outputs is not None and len(labels) != num_outputs:
            raise ValueError(f"{len(labels)} classes for num_outputs={num_outputs}")
        return labels

    @field_validator("loss")
    @classmethod
    def _loss_of_kind(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is None:  # the kind is wrong: reported on its own
            return value
        losses = tuple(loss for loss in LOSSES.names if LOSSES.info(loss)["kind"] == kind)
        if value not in losses:
            raise ValueError(f"unknown loss {value!r} for a {kind} task; expected one of {losses}")
        return value

    @field_validator("loss_params", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("loss_params")
    @classmethod
    def _params_of_loss(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        loss = info.data.get("loss")
        if loss not in LOSSES:  # the loss (or the kind) is wrong: reported on its own
            return value
        allowed = LOSSES.accepted(loss)
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} for loss '{loss}'; allowed: {sorted(allowed)}")
        params = {**allowed, **value}
        problems = []
        if "beta" in params and not 0.0 <= params["beta"] < 1.0:
            problems.append(f"beta: expected 0 <= beta < 1, got {params['beta']}")
        if "gamma" in params and params["gamma"] < 0:
            problems.append(f"gamma: expected gamma >= 0, got {params['gamma']}")
        if "delta" in params and params["delta"] <= 0:
            problems.append(f"delta: expected delta > 0, got {params['delta']}")
        if problems:
            raise ValueError("; ".join(problems))
        return params

    @field_validator("lds", "fds", mode="before")
    @classmethod
    def _disabled_is_none(cls, value: Any, info: ValidationInfo) -> Any:
        """A disabled section is None; only its keys are checked (its values may be left over)."""
        if isinstance(value, _Smoothing) and not value.enabled:
            return None
        if isinstance(value, Mapping) and value.get("enabled", True) is False:
            config = LDSConfig if info.field_name == "lds" else FDSConfig
            unknown = sorted(set(value) - set(config.model_fields))
            if unknown:
                raise ValueError(f"unknown key(s) {unknown}; allowed: {list(config.model_fields)}")
            return None
        return value

    @field_validator("lds", "fds")
    @classmethod
    def _regression_only(cls, value: _Smoothing | None, info: ValidationInfo) -> _Smoothing | None:
        if value is not None and info.data.get("kind") == CLASSIFICATION:
            raise ValueError("only regression tasks can use LDS/FDS")
        return value

    @property
    def is_classification(self) -> bool:
        """True for a classification task."""
        return self.kind == CLASSIFICATION

    def encode(self, column: pd.Series) -> np.ndarray:
        """Training targets from a metadata column: class indices (-1 = missing) or floats (NaN = missing).

        Raises:
            ValueError: a label that is not one of ``classes``, naming the task and the labels.
        """
        if not self.is_classification:
            return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        labels = column.astype("string")
        index = {label: i for i, label in enumerate(self.classes)}
        unknown = sorted(set(labels.dropna()) - set(index))
        if unknown:
            raise ValueError(
                f"task '{self.name}': labels {unknown} are not among its classes {list(self.classes)}"
            )
        return labels.map(index).fillna(-1).astype(np.int64).to_numpy()

    def truth(self, column: pd.Series) -> np.ndarray:
        """The ``<target>_true`` column of the predictions frame (labels as strings, or floats)."""
        if self.is_classification:
            return column.astype("string").to_numpy()
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)

    def prediction_columns(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This task's columns of the predictions frame from :func:`~alloy_mtl.mtl.training.predict.predict` output.

        Classification: ``<target>_pred`` (label) and ``prob_<class>`` per class; regression: ``<target>_pred``.
        """
        if not self.is_classification:
            return {f"{self.target}_pred": outputs[f"{self.name}_pred"]}
        columns = {f"{self.target}_pred": np.asarray(self.classes)[outputs[f"{self.name}_pred"]]}
        probs = outputs[f"{self.name}_probs"]
        columns.update({f"prob_{label}": probs[:, i] for i, label in enumerate(self.classes)})
        return columns


def default_classes(num_outputs: int) -> tuple[str, ...]:
    """The five alloys for a five-way task, else the class indices as strings."""
    if num_outputs == len(ALLOYS):
        return ALLOYS
    return tuple(str(i) for i in range(num_outputs))


def parse_tasks(params: Mapping[str, Any]) -> list[TaskSpec]:
    """Parse task specifications from parameters (the YAML form, as model bundles and checkpoints record it).

    Args:
        params: either the mapping ``{task_name: {kind: ..., ...}}`` or a mapping with the single key
            ``tasks`` holding it.

    Returns:
        One ``TaskSpec`` per task, in the order given.

    Raises:
        alloy_mtl.config.ParameterError: every problem of every task, each named by its dotted path
            (``tasks.<task>.<field>``): unknown kind, loss or key, missing ``num_outputs`` for a
            classification task, negative weight, or any other malformed value.
    """
    if not isinstance(params, Mapping):
        raise ParameterError([f"tasks: expected a mapping of task name -> spec, got {type(params).__name__}"])
    inner = params.get("tasks") if set(params) == {"tasks"} else None
    if isinstance(inner, Mapping) and all(isinstance(v, Mapping) for v in inner.values()):
        params = inner
    if not params:
        raise ParameterError(["tasks: expected at least one task"])
    specs: list[TaskSpec] = []
    problems: list[str] = []
    for name, raw in params.items():
        where = f"tasks.{name}"
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
            continue
        if raw.get("name", name) != name:
            problems.append(f"{where}.name: {raw['name']!r} is not the task's key {name!r}")
            continue
        try:
            specs.append(parse_params(TaskSpec, {**raw, "name": name}, where))
        except ParameterError as err:
            problems.extend(err.problems)
    if problems:
        raise ParameterError(problems)
    return specs
