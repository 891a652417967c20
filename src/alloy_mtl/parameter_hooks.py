"""Kedro hooks: check the parameters a pipeline reads before its first node runs, and resolve the instrument
the simulation uses (``generation.instrument``)."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline import Pipeline

from alloy_mtl.parameters import check_parameters
from alloy_mtl.physics.calibrated_generation import resolve_generation, wants_calibrated

logger = logging.getLogger(__name__)

CALIBRATED = "calibrated_instrument"
"""The catalog dataset ``calibrate_instrument`` writes."""


class ParameterCheckHooks:
    """Fails a run at its start, naming every wrong parameter, instead of hours later in the node that reads it."""

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        """Parse every ``params:`` input of ``pipeline``."""
        names = sorted(name for name in pipeline.inputs() if name.startswith("params:"))
        check_parameters({name.removeprefix("params:"): catalog.load(name) for name in names})


class CalibratedInstrumentHooks:
    """Resolves ``generation.instrument`` once, before the first node, so that every node reading
    ``params:generation`` (data generation, evaluation set, robustness suite, physics limit, external
    evaluation) simulates the same instrument: the one ``calibrate_instrument`` fitted to the lab's
    (``CALIBRATED``, the latest version) when there is one (``auto``, the default) or required (``calibrated``),
    else the nominal one."""

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        """Replace ``params:generation`` by its resolved form where the pipeline reads it."""
        if "params:generation" not in pipeline.inputs() or CALIBRATED in pipeline.all_outputs():
            return  # the calibration itself is fitted against the nominal instrument
        generation = catalog.load("params:generation") or {}
        resolved = resolved_generation(catalog)
        if resolved != generation:
            catalog["params:generation"] = resolved


def resolved_generation(catalog: CatalogProtocol) -> dict[str, Any]:
    """``params:generation`` with ``generation.instrument`` resolved against the catalog's calibrated instrument
    (what :class:`CalibratedInstrumentHooks` puts in the catalog; a torchrun replica, which runs its node without
    the hooks, reads the same)."""
    generation = catalog.load("params:generation") or {}
    calibrated = (
        catalog.load(CALIBRATED) if wants_calibrated(generation) and catalog.exists(CALIBRATED) else None
    )
    resolved = resolve_generation(generation, calibrated)
    if calibrated is not None:
        logger.info(
            "generation.instrument %s: simulating the calibrated instrument (%s, channel kV %s, fitted "
            "from %s); --params generation.instrument=nominal ignores it",
            generation.get("instrument", "auto"),
            {key: round(float(value), 4) for key, value in calibrated["instrument"].items()},
            [round(float(v), 2) for v in resolved.get("kv", [])],
            calibrated.get("source", "?"),
        )
    return resolved
