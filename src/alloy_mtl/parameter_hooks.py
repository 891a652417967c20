"""Kedro hooks: check the parameters a pipeline reads before its first node runs, and resolve the instrument
the simulation uses (``generation.instrument``)."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline import Pipeline

from alloy_mtl.parameters import check_parameters
from alloy_mtl.physics.calibrated_generation import INSTRUMENT_KEY, resolve_generation, uses_calibrated

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
    ``params:generation`` (data generation, evaluation set, robustness suite, physics limit) simulates the same
    instrument: the nominal one, or the one ``calibrate_instrument`` fitted to the lab's (``CALIBRATED``)."""

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        """Replace ``params:generation`` by its resolved form where the pipeline reads it."""
        if "params:generation" not in pipeline.inputs() or CALIBRATED in pipeline.all_outputs():
            return  # the calibration itself is fitted against the nominal instrument
        generation = catalog.load("params:generation")
        if INSTRUMENT_KEY not in (generation or {}):
            return
        calibrated = (
            catalog.load(CALIBRATED) if uses_calibrated(generation) and catalog.exists(CALIBRATED) else None
        )
        catalog["params:generation"] = resolve_generation(generation, calibrated)
