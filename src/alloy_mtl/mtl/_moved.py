"""Old module paths of ``alloy_mtl.mtl`` (before its sub-packages) as aliases of their new homes.

Logged MLflow models carry the code they were logged with, and a process that already imported the installed
``alloy_mtl`` resolves their ``from alloy_mtl.mtl.model import ...`` against it; user scripts and notebooks
import the old paths too. An import of an old path returns the new module itself (one module object, so
``isinstance`` and monkeypatching see the same classes) and warns once with the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED_MODULES: dict[str, str] = {
    f"alloy_mtl.mtl.{old}": f"alloy_mtl.mtl.{new}"
    for old, new in {
        "backbones": "models.backbones",
        "model": "models.multitask",
        "input_transform": "models.input_transform",
        "dropout": "models.dropout",
        "lds": "losses.lds",
        "fds": "losses.fds",
        "torch_data": "loading.datasets",
        "loaders": "loading.loaders",
        "sampler": "loading.samplers",
        "device_data": "loading.device_batches",
        "resize": "loading.resize",
        "optimizers": "optim.optimizers",
        "schedules": "optim.schedules",
        "weight_averaging": "optim.weight_averaging",
        "trainer": "training.trainer",
        "callbacks": "training.callbacks",
        "meter": "training.meter",
        "checkpoint": "training.checkpoint_io",
        "checkpointing": "training.checkpoint_callback",
        "inference": "training.predict",
        "distributed": "parallel.process_group",
        "ddp_trainer": "parallel.ddp_trainer",
        "experiment": "recipe",
    }.items()
}
"""Old dotted path -> new dotted path, for every module that moved into a sub-package (``alloy_mtl.mtl.losses``,
now a package itself, forwards its old names in its own ``__init__``)."""


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module path to the module at its new path."""

    def __init__(self, moved: dict[str, str], package: str) -> None:
        self.package = package
        self.moved = {
            old.replace("alloy_mtl", package, 1): new.replace("alloy_mtl", package, 1)
            for old, new in moved.items()
        }

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec for an old path (``None`` for anything else)."""
        if fullname not in self.moved:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        """Python's default module (replaced in :meth:`exec_module`)."""
        return None

    def exec_module(self, module: ModuleType) -> None:
        """Import the new module and put it in ``sys.modules`` under the old name too."""
        new = self.moved[module.__name__]
        warnings.warn(
            f"{module.__name__} moved to {new}; import it from there", DeprecationWarning, stacklevel=2
        )
        sys.modules[module.__name__] = importlib.import_module(new)


def install(package: str) -> None:
    """Put one finder for ``package``'s moved modules on ``sys.meta_path`` (idempotent)."""
    for finder in sys.meta_path:
        if isinstance(finder, MovedModuleFinder) and finder.package == package:
            return
    sys.meta_path.append(MovedModuleFinder(MOVED_MODULES, package))
