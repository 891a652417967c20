"""Strict, frozen parameter models parsed from YAML mappings, flattened to dotted keys, dumped back to YAML."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound="ParamsModel")

MAX_LISTED_PROBLEMS = 50


class ParameterError(ValueError):
    """One or more parameters are wrong; the message lists each with its dotted path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:MAX_LISTED_PROBLEMS]
        more = len(self.problems) - len(shown)
        lines = [*shown, f"... and {more} more"] if more > 0 else shown
        header = (
            "invalid parameter" if len(self.problems) == 1 else f"{len(self.problems)} invalid parameters"
        )
        super().__init__(f"{header}:\n  " + "\n  ".join(lines))


class ParamsModel(BaseModel):
    """Base of every parameters section: frozen, unknown keys refused, values validated on assignment.

    A string literal under a field is its description (``use_attribute_docstrings``): the documentation's
    configuration reference is generated from these models.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, use_attribute_docstrings=True
    )


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model that owns the key at ``loc``."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        current = next(
            (
                arg
                for arg in (annotation, *getattr(annotation, "__args__", ()))
                if hasattr(arg, "model_fields")
            ),
            None,
        )
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _describe(
    error: Mapping[str, Any], model: type[BaseModel], root: str, where: Callable[[str], str]
) -> str:
    loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
    dotted = ".".join(str(part) for part in loc)
    path = where(dotted) if dotted else root
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{path}: unknown key{hint} (allowed: {', '.join(allowed)})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith("Input should be ") and "input" in error:
        return f"{path}: got {error['input']!r}, expected {message.removeprefix('Input should be ')}"
    if error["type"] not in {"value_error", "assertion_error"} and "input" in error:
        message += f" (got {error['input']!r})"
    return f"{path}: {message}"


def parse_params(
    model: type[M], params: Mapping[str, Any] | M | None, root: str, where: Callable[[str], str] | None = None
) -> M:
    """Validate ``params`` into ``model``, collecting every problem before failing.

    Args:
        model: the parameters model.
        params: the merged YAML mapping (or an already parsed model, returned as is).
        root: dotted prefix of the section in the YAML (``training``), used in messages.
        where: maps a dotted key inside the section to the path shown to the user (for merged sections whose
            keys come from several YAML places); default ``<root>.<key>``.

    Raises:
        ParameterError: listing each wrong key as ``training.epochz: unknown key; did you mean epochs?``.
    """
    if isinstance(params, model):
        return params
    locate = where or (lambda dotted: f"{root}.{dotted}")
    if params is not None and not isinstance(params, Mapping):
        raise ParameterError([f"{root}: expected a mapping of settings, got {type(params).__name__}"])
    try:
        return model.model_validate(dict(params or {}))
    except ValidationError as err:
        problems: list[str] = []
        for error in err.errors():
            nested = (error.get("ctx") or {}).get("error")
            if isinstance(nested, ParameterError):  # a validator that parsed a sub-section itself
                problems.extend(_relocate(nested, error["loc"][:-1], locate))
            else:
                problems.append(_describe(error, model, root, locate))
        raise ParameterError(problems) from None


def _relocate(nested: ParameterError, parent: tuple[Any, ...], locate: Callable[[str], str]) -> list[str]:
    """A sub-section's problems (``tasks.alloy.weight: ...``) named by their place in this section."""
    prefix = ".".join(str(part) for part in parent)
    relocated = []
    for problem in nested.problems:
        key, sep, message = problem.partition(": ")
        if not sep:
            relocated.append(problem)
            continue
        relocated.append(f"{locate(f'{prefix}.{key}' if prefix else key)}: {message}")
    return relocated


def flatten(params: BaseModel | Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted.key: value}`` of every leaf (lists and tuples stay values), the form MLflow logs."""
    data = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def to_yaml(params: BaseModel) -> str:
    """The resolved parameters as YAML (parsing it back gives an equal model)."""
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``, recursing into nested mappings (neither input is modified)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
