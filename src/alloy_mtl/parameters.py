"""Parse every parameter section a pipeline reads, before any node runs, reporting all problems at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from alloy_mtl.config import ParameterError, ParamsModel, parse_params
from alloy_mtl.data.calibration_params import CalibrationParams
from alloy_mtl.data.params import DataSourceParams, SplitParams, ValidationParams
from alloy_mtl.evaluation.drift import DriftParams
from alloy_mtl.evaluation.external import ExternalParams
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.evaluation.physics_unknown import UnknownMaterialsParams
from alloy_mtl.evaluation.unit_conformal import UnitConformalParams
from alloy_mtl.mtl.params import TrainingParams, deep_merge, parse_training_params
from alloy_mtl.physics.calibrated_generation import nominal_generation
from alloy_mtl.physics.simulator import SimulationConfig
from alloy_mtl.properties.params import AlloyPropertiesParams
from alloy_mtl.tracking.promotion import gate_setting_problems
from alloy_mtl.tuning.params import TuningParams

SECTIONS: dict[str, type[ParamsModel]] = {
    "data_source": DataSourceParams,
    "split": SplitParams,
    "validation": ValidationParams,
    "evaluation": EvaluationParams,
    "alloy_properties": AlloyPropertiesParams,
    "tuning": TuningParams,
    "calibration": CalibrationParams,
    "external": ExternalParams,
    "inference.drift": DriftParams,
    "inference.unit_conformal": UnitConformalParams,
    "unknown_materials": UnknownMaterialsParams,
}
TRAIN_OPTIONS_SUFFIX = ".train_options"


def _problems(check: Callable[[], Any], section: str) -> list[str]:
    try:
        check()
    except ParameterError as err:
        return err.problems
    except ValueError as err:
        return [f"{section}: {err}"]
    return []


def check_parameters(params: Mapping[str, Any]) -> None:
    """Validate the parameter sections present in ``params`` (Kedro names without ``params:``).

    ``training`` is checked merged with each ``<arch>.train_options`` present.

    Raises:
        ParameterError: every unknown key and bad value of every section, each with its YAML path.
    """
    problems: list[str] = []
    for section, model in SECTIONS.items():
        if section in params:
            problems += _problems(lambda m=model, s=section: parse_params(m, params[s], s), section)
    if "registry" in params:
        problems += gate_setting_problems(params["registry"] or {})
    if "generation" in params:
        problems += _problems(
            lambda: SimulationConfig.from_params(nominal_generation(params["generation"])), "generation"
        )
    options = {
        k.removesuffix(TRAIN_OPTIONS_SUFFIX): v for k, v in params.items() if k.endswith(TRAIN_OPTIONS_SUFFIX)
    }
    if "training" in params:
        for arch, overrides in options.items():
            found = _problems(
                lambda a=arch, o=overrides: parse_training_params(params["training"], o, a), arch
            )
            problems += [p for p in found if p not in problems]
    if problems:
        raise ParameterError(problems)


def with_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with each known section completed by its typed model's defaults (YAML values win).

    The YAML files hold only what differs from the defaults; tools that need a setting's effective value
    without running a node (the Kubeflow compiler's pipeline parameters) read it here.
    """
    models: dict[str, type[ParamsModel]] = {**SECTIONS, "training": TrainingParams}
    completed = dict(params)
    for section, model in models.items():
        if "." in section:  # a sub-section (inference.drift): its parent is not a typed model
            continue
        defaults = {
            name: field.get_default(call_default_factory=True)
            for name, field in model.model_fields.items()
            if not field.is_required()
        }
        defaults = json.loads(json.dumps(defaults, default=_jsonable))
        completed[section] = deep_merge(defaults, params.get(section) or {})
    return completed


def _jsonable(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, ParamsModel) else str(value)
