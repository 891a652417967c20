"""Parameters flattened to dotted keys for MLflow (the one place that decides how nested settings look)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from alloy_mtl.config.base import flatten

MAX_PARAM_VALUE_LENGTH = 6000
"""MLflow 3 refuses parameter values longer than this; longer values are cut (and end with '...')."""


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as ``{"a.b.c": "value"}`` with string values, ready for ``log_params``.

    The keys are :func:`alloy_mtl.config.flatten`'s (the dotted form of the typed parameter models); lists
    and other values are written as JSON (``[40, 50, 80]``), ``None`` as ``null``, an explicitly empty
    mapping as ``{}``.

    Args:
        params: the resolved parameters (nested mappings).
        prefix: key prefix (e.g. ``"training"``).
    """
    return {key: _as_text(value) for key, value in flatten(params, f"{prefix}." if prefix else "").items()}


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, Mapping):
        text = "{}"
    else:
        text = json.dumps(value, default=str)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        text = text[: MAX_PARAM_VALUE_LENGTH - 3] + "..."
    return text


def flatten_numbers(values: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, float]:
    """The finite-or-not numeric leaves of a nested mapping (e.g. ``metrics.json``) as ``{"a.b": 0.5}``.

    Booleans, strings, lists and ``None`` are skipped: MLflow metrics are numbers.
    """
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_numbers(value, name, sep))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat
