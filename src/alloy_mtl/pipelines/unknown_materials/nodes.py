"""Nodes of the unknown_materials pipeline: thin wrappers over :mod:`alloy_mtl.evaluation.physics_unknown`."""

from __future__ import annotations

import logging
from typing import Any

from alloy_mtl.config import parse_params
from alloy_mtl.evaluation.physics_unknown import (
    PhysicsUnknownScore,
    UnknownMaterialsParams,
    fit_physics_unknown,
)

logger = logging.getLogger(__name__)

DISABLED = "not fitted: unknown_materials.enabled is false"


def fit_unknown_materials(
    generation: dict[str, Any] | None, unknown_materials: dict[str, Any] | None
) -> tuple[PhysicsUnknownScore | str, dict[str, Any]]:
    """Fit the physics unknown-designation score for the instrument ``generation`` describes (the lab's once
    ``calibrate_instrument`` has fitted it). Returns the score (or, where disabled, the reason it is not
    fitted: inference then reports it) and its summary."""
    params = parse_params(UnknownMaterialsParams, unknown_materials, "unknown_materials")
    if not params.enabled:
        logger.info("physics unknown score %s", DISABLED)
        return DISABLED, {"fitted": False, "reason": DISABLED}
    score = fit_physics_unknown(generation, params)
    return score, {"fitted": True, **score.summary()}
