"""Kedro hook: check the parameters a pipeline reads before its first node runs."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline import Pipeline

from alloy_mtl.parameters import check_parameters


class ParameterCheckHooks:
    """Fails a run at its start, naming every wrong parameter, instead of hours later in the node that reads it."""

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: CatalogProtocol
    ) -> None:
        """Parse every ``params:`` input of ``pipeline``."""
        names = sorted(name for name in pipeline.inputs() if name.startswith("params:"))
        check_parameters({name.removeprefix("params:"): catalog.load(name) for name in names})
