"""Typed parameters and name -> constructor registries: the plain (Kedro-free) configuration layer.

``ParamsModel`` subclasses are frozen pydantic models that refuse unknown keys; :func:`parse_params` turns a
merged YAML mapping into one, reporting every problem at once with its dotted path. :class:`Registry` maps
names to constructors and reads the parameters each accepts from the constructor's signature.
"""

from alloy_mtl.config.base import ParameterError, ParamsModel, flatten, parse_params, to_yaml
from alloy_mtl.config.registry import Registry

__all__ = ["ParameterError", "ParamsModel", "Registry", "flatten", "parse_params", "to_yaml"]
