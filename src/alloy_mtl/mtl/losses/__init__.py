"""Per-task losses: imbalance-aware classification losses, regression losses, LDS and FDS.

``alloy_mtl.mtl.losses`` was once the module now at :mod:`alloy_mtl.mtl.losses.task_losses`; its names still
resolve here, lazily and with a DeprecationWarning, so old imports (``from alloy_mtl.mtl.losses import
LOSSES``) keep working without this package importing anything when it loads.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_SUBMODULES = frozenset({"task_losses", "lds", "fds"})


def __getattr__(name: str) -> Any:
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    task_losses = importlib.import_module(f"{__name__}.task_losses")
    if not hasattr(task_losses, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"{__name__}.{name} moved to {task_losses.__name__}.{name}; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(task_losses, name)
