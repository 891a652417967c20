"""Conversion of metric results (numpy scalars, arrays, NaN) into plain JSON-able Python values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:  # noqa: PLR0911 (one return per JSON type)
    """Return ``value`` with numpy types turned into Python ones and NaN/inf turned into ``None``.

    Mappings become dicts with ``str`` keys, sequences and arrays become lists; anything else that is
    not a number, string, bool or ``None`` raises ``TypeError`` naming its type.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return [to_jsonable(item) for item in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    raise TypeError(f"cannot convert a value of type {type(value).__name__} to JSON")
