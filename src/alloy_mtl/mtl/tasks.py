"""Task specifications for the multi-task model, parsed from Kedro parameters (plain dicts).

``TaskSpec`` is the one home of a task's facts: kind, target column, class names, number of outputs, loss.
Dataset building, prediction, the predictions frame and evaluation ask the spec. A task entry looks like::

    thickness: {
        kind: regression,
        target: thickness_mm,
        loss: mse,
        weight: 1.0,
        lds: {enabled: true, bins: 50, kernel: gaussian, kernel_size: 5, sigma: 2.0, reweight: sqrt_inv},
        fds: {enabled: false},
    }

Every error names the task and the field that is wrong and says what was expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS, CLASSIFICATION, REGRESSION, TASK_KINDS
from alloy_mtl.mtl.losses.task_losses import LOSSES

__all__ = ["CLASSIFICATION", "REGRESSION", "TASK_KINDS", "FDSConfig", "LDSConfig", "TaskSpec", "parse_tasks"]

LDS_KERNELS = ("gaussian", "triang", "laplace")
LDS_REWEIGHTS = ("inv", "sqrt_inv")
_REWEIGHT_ALIASES = {"inv": "inv", "inverse": "inv", "sqrt_inv": "sqrt_inv"}

_TASK_KEYS = ("kind", "target", "num_outputs", "classes", "loss", "weight", "loss_params", "lds", "fds")
_TASK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class LDSConfig:
    """Label distribution smoothing (Yang et al. 2021) settings of one regression task."""

    bins: int = 50
    kernel: str = "gaussian"
    kernel_size: int = 5
    sigma: float = 2.0
    reweight: str = "sqrt_inv"


@dataclass(frozen=True)
class FDSConfig:
    """Feature distribution smoothing (Yang et al. 2021) settings of one regression task."""

    bins: int = 50
    kernel: str = "gaussian"
    kernel_size: int = 5
    sigma: float = 2.0
    start_epoch: int = 1
    momentum: float = 0.9
    clip_min: float = 0.1
    clip_max: float = 10.0


@dataclass(frozen=True)
class TaskSpec:
    """One task of the multi-task model.

    Attributes:
        name: task name (key in the parameters; used in metric names).
        kind: ``classification`` or ``regression``.
        target: metadata column holding the label.
        num_outputs: number of classes (classification) or 1 (regression).
        classes: class labels as they appear in the target column, in output order (classification; the
            five alloys by default when there are five outputs, else ``"0"``, ``"1"``, ...); empty for
            regression.
        loss: loss name, a key of :data:`alloy_mtl.mtl.losses.task_losses.LOSSES` of the task's kind.
        weight: static, non-negative task weight.
        loss_params: loss hyper-parameters, defaults filled in.
        lds: LDS settings when enabled, else None.
        fds: FDS settings when enabled, else None.
    """

    name: str
    kind: str
    target: str
    num_outputs: int
    loss: str
    weight: float = 1.0
    loss_params: dict[str, float] = field(default_factory=dict)
    lds: LDSConfig | None = None
    fds: FDSConfig | None = None
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == CLASSIFICATION and not self.classes:
            object.__setattr__(self, "classes", default_classes(self.num_outputs))

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


def _error(task: str, fld: str, message: str) -> ValueError:
    return ValueError(f"task '{task}', field '{fld}': {message}")


def _number(task: str, fld: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _error(task, fld, f"expected a finite number, got {value!r}")
    return float(value)


def _integer(task: str, fld: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _error(task, fld, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _parse_loss_params(task: str, loss: str, raw: Any) -> dict[str, float]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _error(task, "loss_params", f"expected a mapping, got {type(raw).__name__}")
    allowed = LOSSES.accepted(loss)
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise _error(
            task, "loss_params", f"unknown key(s) {unknown} for loss '{loss}'; allowed: {sorted(allowed)}"
        )
    params = dict(allowed)
    for key, value in raw.items():
        params[key] = _number(task, f"loss_params.{key}", value)
    if "beta" in params and not 0.0 <= params["beta"] < 1.0:
        raise _error(task, "loss_params.beta", f"expected 0 <= beta < 1, got {params['beta']}")
    if "gamma" in params and params["gamma"] < 0:
        raise _error(task, "loss_params.gamma", f"expected gamma >= 0, got {params['gamma']}")
    if "delta" in params and params["delta"] <= 0:
        raise _error(task, "loss_params.delta", f"expected delta > 0, got {params['delta']}")
    return params


def _check_kernel(task: str, section: str, cfg: dict[str, Any]) -> None:
    if cfg["kernel"] not in LDS_KERNELS:
        raise _error(
            task, f"{section}.kernel", f"unknown kernel {cfg['kernel']!r}; expected one of {LDS_KERNELS}"
        )
    cfg["bins"] = _integer(task, f"{section}.bins", cfg["bins"], 2)
    cfg["kernel_size"] = _integer(task, f"{section}.kernel_size", cfg["kernel_size"], 1)
    if cfg["kernel_size"] % 2 == 0:
        raise _error(task, f"{section}.kernel_size", f"expected an odd integer, got {cfg['kernel_size']}")
    cfg["sigma"] = _number(task, f"{section}.sigma", cfg["sigma"])
    if cfg["sigma"] <= 0:
        raise _error(task, f"{section}.sigma", f"expected sigma > 0, got {cfg['sigma']}")


def _section(task: str, section: str, raw: Any, defaults: dict[str, Any]) -> dict[str, Any] | None:
    """Validate an optional ``{enabled: bool, ...}`` section; None when absent or disabled."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _error(task, section, f"expected a mapping, got {type(raw).__name__}")
    allowed = {"enabled", *defaults}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _error(task, section, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _error(task, f"{section}.enabled", f"expected true or false, got {enabled!r}")
    if not enabled:
        return None
    cfg = dict(defaults)
    cfg.update({k: v for k, v in raw.items() if k != "enabled"})
    return cfg


def _parse_lds(task: str, raw: Any) -> LDSConfig | None:
    cfg = _section(task, "lds", raw, asdict(LDSConfig()))
    if cfg is None:
        return None
    _check_kernel(task, "lds", cfg)
    reweight = _REWEIGHT_ALIASES.get(cfg["reweight"]) if isinstance(cfg["reweight"], str) else None
    if reweight is None:
        raise _error(
            task, "lds.reweight", f"unknown reweighting {cfg['reweight']!r}; expected one of {LDS_REWEIGHTS}"
        )
    cfg["reweight"] = reweight
    return LDSConfig(**cfg)


def _parse_fds(task: str, raw: Any) -> FDSConfig | None:
    cfg = _section(task, "fds", raw, asdict(FDSConfig()))
    if cfg is None:
        return None
    _check_kernel(task, "fds", cfg)
    cfg["start_epoch"] = _integer(task, "fds.start_epoch", cfg["start_epoch"], 0)
    cfg["momentum"] = _number(task, "fds.momentum", cfg["momentum"])
    if not 0.0 <= cfg["momentum"] < 1.0:
        raise _error(task, "fds.momentum", f"expected 0 <= momentum < 1, got {cfg['momentum']}")
    cfg["clip_min"] = _number(task, "fds.clip_min", cfg["clip_min"])
    cfg["clip_max"] = _number(task, "fds.clip_max", cfg["clip_max"])
    if not 0 < cfg["clip_min"] <= cfg["clip_max"]:
        raise _error(
            task,
            "fds.clip_min",
            f"expected 0 < clip_min <= clip_max, got {cfg['clip_min']}, {cfg['clip_max']}",
        )
    return FDSConfig(**cfg)


def _parse_task(name: Any, raw: Any) -> TaskSpec:  # noqa: C901, PLR0912 (one check per task field, in reading order)
    if not isinstance(name, str) or not _TASK_NAME_RE.match(name) or "__" in name:
        raise ValueError(
            f"task name {name!r}: expected letters, digits and single underscores, starting with a letter"
        )
    if not isinstance(raw, Mapping):
        raise _error(name, "(task)", f"expected a mapping of fields, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_TASK_KEYS))
    if unknown:
        raise _error(name, unknown[0], f"unknown key(s) {unknown}; allowed: {list(_TASK_KEYS)}")

    kind = raw.get("kind")
    if kind not in TASK_KINDS:
        raise _error(name, "kind", f"unknown kind {kind!r}; expected one of {TASK_KINDS}")
    target = raw.get("target", name)
    if not isinstance(target, str) or not target:
        raise _error(name, "target", f"expected a column name, got {target!r}")

    classes = _parse_classes(name, kind, raw)
    if kind == CLASSIFICATION:
        if "num_outputs" not in raw and not classes:
            raise _error(name, "num_outputs", "required for a classification task (number of classes)")
        num_outputs = _integer(name, "num_outputs", raw.get("num_outputs", len(classes)), 2)
        if classes and len(classes) != num_outputs:
            raise _error(name, "classes", f"{len(classes)} classes for num_outputs={num_outputs}")
        default_loss = "cross_entropy"
    else:
        num_outputs = _integer(name, "num_outputs", raw.get("num_outputs", 1), 1)
        if num_outputs != 1:
            raise _error(name, "num_outputs", f"a regression task has 1 output, got {num_outputs}")
        default_loss = "mse"
    losses = tuple(loss for loss in LOSSES.names if LOSSES.info(loss)["kind"] == kind)

    loss = raw.get("loss", default_loss)
    if loss not in losses:
        raise _error(name, "loss", f"unknown loss {loss!r} for a {kind} task; expected one of {losses}")
    weight = _number(name, "weight", raw.get("weight", 1.0))
    if weight < 0:
        raise _error(name, "weight", f"expected a non-negative weight, got {weight}")
    loss_params = _parse_loss_params(name, loss, raw.get("loss_params"))

    lds = _parse_lds(name, raw.get("lds"))
    fds = _parse_fds(name, raw.get("fds"))
    if kind == CLASSIFICATION and (lds is not None or fds is not None):
        raise _error(name, "lds" if lds is not None else "fds", "only regression tasks can use LDS/FDS")
    return TaskSpec(
        name=name,
        kind=kind,
        target=target,
        num_outputs=num_outputs,
        loss=loss,
        weight=weight,
        loss_params=loss_params,
        lds=lds,
        fds=fds,
        classes=classes,
    )


def _parse_classes(task: str, kind: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    classes = raw.get("classes")
    if classes is None:
        return ()
    if kind != CLASSIFICATION:
        raise _error(task, "classes", "only classification tasks have classes")
    if not isinstance(classes, (list, tuple)) or len({str(c) for c in classes}) != len(classes):
        raise _error(task, "classes", f"expected a list of distinct labels, got {classes!r}")
    return tuple(str(c) for c in classes)


def parse_tasks(params: Mapping[str, Any]) -> list[TaskSpec]:
    """Parse task specifications from parameters.

    Args:
        params: either the mapping ``{task_name: {kind: ..., ...}}`` or a mapping with the single key
            ``tasks`` holding it.

    Returns:
        One ``TaskSpec`` per task, in the order given.

    Raises:
        ValueError: naming the task and field on unknown kind, loss or key, missing ``num_outputs`` for a
            classification task, negative weight, or any other malformed value.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"tasks: expected a mapping of task name -> spec, got {type(params).__name__}")
    inner = params.get("tasks") if set(params) == {"tasks"} else None
    if isinstance(inner, Mapping) and all(isinstance(v, Mapping) for v in inner.values()):
        params = inner
    if not params:
        raise ValueError("tasks: expected at least one task")
    return [_parse_task(name, raw) for name, raw in params.items()]
