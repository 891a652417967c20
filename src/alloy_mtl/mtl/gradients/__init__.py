"""Gradient methods for multi-task training, chosen by name.

``build_gradient_method(name, task_names, params)`` with ``name`` in :data:`METHOD_NAMES`:
``equal``, ``uncertainty``, ``gradnorm``, ``pcgrad`` (exact, shared parameters), ``pcgrad_fast`` (shared
representation) and the torchjd aggregators (``upgrad``, ``mgda``, ``dualproj``, ``imtlg``, ``aligned_mtl``,
``config``, ``fairgrad``; ``cagrad`` and ``nash_mtl`` only when torchjd's optional solvers are installed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import GradientMethod, StepInfo, task_pairs
from .diagnostics import EpochDiagnostics
from .jacobian_descent import AGGREGATORS, JacobianDescent, build_jacobian_descent
from .pcgrad import PCGrad, PCGradFast, pcgrad_combine, pcgrad_weights
from .weighting import EqualWeighting, GradNorm, UncertaintyWeighting

#: Parameter names every method accepts.
COMMON_PARAMS = ("task_weights", "diagnostics_every")

#: name -> (class, method-specific parameter names)
_METHODS: dict[str, tuple[type[GradientMethod], tuple[str, ...]]] = {
    "equal": (EqualWeighting, ()),
    "uncertainty": (UncertaintyWeighting, ("task_kinds", "init_log_var")),
    "gradnorm": (GradNorm, ("alpha", "lr", "reference")),
    "pcgrad": (PCGrad, ("seed",)),
    "pcgrad_fast": (PCGradFast, ("seed",)),
}

METHOD_NAMES: tuple[str, ...] = (*_METHODS, *AGGREGATORS)

#: Parameters that are meaningful to some method and silently ignored by the others (the trainer always
#: passes them).
_SHARED_OPTIONAL = ("task_kinds", "seed")


def gradient_method_parameters(name: str) -> tuple[str, frozenset[str]]:
    """The canonical name of method ``name`` and the parameters it accepts.

    Raises:
        ValueError: unknown method, listing the known ones.
    """
    key = str(name).lower()
    if key in _METHODS:
        specific = _METHODS[key][1]
    elif key in AGGREGATORS:
        specific = (*AGGREGATORS[key][1], "parallel_chunk_size")
    else:
        raise ValueError(f"gradient method {name!r} unknown; expected one of {list(METHOD_NAMES)}")
    return key, frozenset({*COMMON_PARAMS, *_SHARED_OPTIONAL, *specific})


def build_gradient_method(
    name: str, task_names: Sequence[str], params: Mapping[str, Any] | None = None
) -> GradientMethod:
    """Build a gradient method by name.

    Args:
        name: one of :data:`METHOD_NAMES` (case-insensitive).
        task_names: task order.
        params: ``task_weights`` ({task: float}, static loss weights), ``diagnostics_every`` (int, default 20;
            0 disables), ``task_kinds`` ({task: classification|regression}), ``seed`` and method-specific
            keys (uncertainty: ``init_log_var``; gradnorm: ``alpha``, ``lr``, ``reference``; mgda:
            ``epsilon``, ``max_iters``; cagrad: ``c``; aligned_mtl: ``scale_mode``; fairgrad:
            ``fairgrad_alpha``; torchjd methods: ``parallel_chunk_size``).

    Raises:
        ValueError: unknown method or parameter, naming what is allowed.
    """
    key, allowed = gradient_method_parameters(name)
    params = dict(params or {})
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"gradient method {key!r}: unknown parameter(s) {unknown}; allowed: {sorted(allowed)}"
        )
    common = {k: params[k] for k in COMMON_PARAMS if k in params}
    if key in AGGREGATORS:
        return build_jacobian_descent(key, task_names, params, **common)
    cls, specific = _METHODS[key]
    kwargs = {k: params[k] for k in specific if k in params}
    return cls(task_names, **common, **kwargs)


def __getattr__(name: str) -> Any:
    """``NNLSDualConeProjector`` on first use: it subclasses a torchjd class, and torchjd stays optional until a
    torchjd method runs."""
    if name == "NNLSDualConeProjector":
        from .dual_cone import NNLSDualConeProjector

        return NNLSDualConeProjector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "METHOD_NAMES",
    "EpochDiagnostics",
    "EqualWeighting",
    "GradNorm",
    "GradientMethod",
    "JacobianDescent",
    "NNLSDualConeProjector",
    "PCGrad",
    "PCGradFast",
    "StepInfo",
    "UncertaintyWeighting",
    "build_gradient_method",
    "gradient_method_parameters",
    "pcgrad_combine",
    "pcgrad_weights",
    "task_pairs",
]
