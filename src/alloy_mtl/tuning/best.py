"""The best configuration PBT found (``data/06_models/<arch>/pbt_best.yml``) and how training starts from it.

No Ray here: ``train_<arch>`` reads the file with a plain YAML parser, so training works without the extra.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from alloy_mtl.config.base import parse_params
from alloy_mtl.mtl.params import TrainingParams

logger = logging.getLogger(__name__)

BEST_CONFIG_FILE = "pbt_best.yml"
#: The hyperparameters PBT evolves, as ``TrainingParams`` fields.
TUNED_KEYS = ("optimizer", "lr", "weight_decay")


class MissingBestConfigError(FileNotFoundError):
    """``start_from_pbt`` is on but ``tune_<arch>`` has not written the best configuration."""


def best_config_path(checkpoint_root: str | Path, arch: str) -> Path:
    """Where ``tune_<arch>`` writes, and ``train_<arch>`` reads, the best configuration."""
    return Path(checkpoint_root) / arch / BEST_CONFIG_FILE


def load_best_config(path: str | Path) -> dict[str, Any]:
    """Read a best-configuration file.

    Raises:
        MissingBestConfigError: no file at ``path`` (names it and the command that writes it).
        ValueError: the file has no ``config`` with ``optimizer``, ``lr`` and ``weight_decay``.
    """
    path = Path(path)
    if not path.is_file():
        arch = path.parent.name
        raise MissingBestConfigError(
            f"training.start_from_pbt is on but {path} does not exist: run `kedro run --pipeline tune_{arch}` "
            f"first, or set start_from_pbt: false to train with the table's {'/'.join(TUNED_KEYS)}"
        )
    content = yaml.safe_load(path.read_text()) or {}
    config = content.get("config") if isinstance(content, Mapping) else None
    missing = [k for k in TUNED_KEYS if not isinstance(config, Mapping) or k not in config]
    if missing:
        raise ValueError(f"{path}: config lacks {missing}; re-run the tune pipeline that writes it")
    return dict(content)


def apply_best_config(params: TrainingParams, best: Mapping[str, Any], source: str = "") -> TrainingParams:
    """``params`` with optimizer, lr and weight decay taken from a best configuration (validated again).

    Raises:
        ValueError: the file was written for another architecture.
        alloy_mtl.config.ParameterError: a value in the file is not a valid training setting.
    """
    arch = best.get("arch")
    if arch is not None and arch != params.arch:
        raise ValueError(f"{source or 'best configuration'} was tuned for {arch!r}, not {params.arch!r}")
    update = {key: best["config"][key] for key in TUNED_KEYS}
    origin = source or BEST_CONFIG_FILE
    merged = parse_params(
        TrainingParams, {**params.model_dump(), **update}, origin, lambda key: f"{origin}: config.{key}"
    )
    logger.info(
        "%s starts from the PBT configuration %s (%s=%s)",
        params.arch,
        update,
        best.get("metric", "metric"),
        best.get("value"),
    )
    return merged


def start_from_best(params: TrainingParams) -> TrainingParams:
    """Apply ``<checkpoint_root>/<arch>/pbt_best.yml`` when ``params.start_from_pbt`` is on; else ``params``."""
    if not params.start_from_pbt:
        return params
    path = best_config_path(params.checkpoint_root, params.arch)
    return apply_best_config(params, load_best_config(path), str(path))
