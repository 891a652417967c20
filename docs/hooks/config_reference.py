"""MkDocs hook: the configuration reference, generated at build time from the typed parameter models.

Every public pydantic model of ``alloy_mtl`` (the ``ParamsModel`` sections and the ``kubeflow.yml`` models) and
the simulator's ``generation`` dataclass get a section with their docstring and a table of field, type,
default, constraints and description. The page ``reference/configuration.md`` holds only a marker that this
hook replaces, so the reference cannot drift from the code. A field the generator cannot render (an unknown
type, constraint or default) stops the build with an error naming the model and the field.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import pkgutil
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
import pydantic
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

ROOT = Path(__file__).resolve().parents[2]
if "alloy_mtl" not in sys.modules:  # document this checkout's code, whatever else is installed
    sys.path.insert(0, str(ROOT / "src"))

from alloy_mtl.config.base import ParamsModel  # noqa: E402

PAGE = "reference/configuration.md"
REQUIRED = "required"
#: The default of a field whose default is its model's own defaults, listed in that model's table.
SEE_MODEL = "its fields' defaults"
MARKER = "<!-- configuration-reference -->"
PACKAGE = "alloy_mtl"
#: Modules not imported while looking for models: the old-path alias finder and the CLI entry point.
SKIPPED_MODULES = ("alloy_mtl._moved", "alloy_mtl.mtl._moved", "alloy_mtl.__main__")
CONF = ROOT / "conf" / "base"

_CONSTRAINTS: dict[type, tuple[str, str]] = {
    annotated_types.Gt: ("gt", "> {}"),
    annotated_types.Ge: ("ge", ">= {}"),
    annotated_types.Lt: ("lt", "< {}"),
    annotated_types.Le: ("le", "<= {}"),
    annotated_types.MultipleOf: ("multiple_of", "multiple of {}"),
    annotated_types.MinLen: ("min_length", "length >= {}"),
    annotated_types.MaxLen: ("max_length", "length <= {}"),
    pydantic.types.Strict: ("strict", "strict type (no coercion)"),
    pydantic.types.AllowInfNan: ("allow_inf_nan", "finite"),
}
_SCALARS = {int: "int", float: "float", str: "str", bool: "bool", type(None): "null", typing.Any: "any"}
_CONTAINERS = {list: "list", tuple: "tuple", dict: "dict", set: "set", frozenset: "set"}


class RenderError(ValueError):
    """A model field the reference cannot document; the message names the model and the field."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One documented field."""

    name: str
    type: str
    default: str
    constraints: str
    description: str


Documented = type  # a pydantic model class or a dataclass


def discover_models(package: str = PACKAGE) -> list[Documented]:
    """Every public pydantic model defined in ``package``, after importing all its modules.

    Raises:
        ImportError: a module of the package that does not import (the reference would be incomplete).
    """
    root = importlib.import_module(package)
    source = Path(root.__file__).resolve()
    if not source.is_relative_to(ROOT):
        raise ImportError(f"{package} is imported from {source}, not from this checkout ({ROOT})")
    for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if module.name not in SKIPPED_MODULES:
            importlib.import_module(module.name)
    found: dict[type, None] = {}
    pending = list(BaseModel.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith(f"{package}.") and not cls.__name__.startswith("_"):
            found[cls] = None
    return sorted(found, key=lambda cls: (cls.__module__, _line(cls)))


def _line(cls: type) -> int:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return 0


def anchor(cls: type) -> str:
    """The section id of ``cls``: its dotted path inside the package, lowercase, with dashes."""
    return f"{cls.__module__.removeprefix(PACKAGE + '.')}.{cls.__qualname__}".lower().replace(".", "-")


def format_type(annotation: Any, where: str) -> str:
    """``annotation`` as a reader writes it in YAML terms (``int | null``, ``"min" | "max"``, ``list[str]``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return format_type(args[0], where)
    if origin is Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (Union, types.UnionType):
        return " | ".join(format_type(arg, where) for arg in args)
    if origin in _CONTAINERS:
        return _format_container(origin, args, where)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if _is_documented(annotation):
        return annotation.__name__
    raise RenderError(f"{where}: cannot document the type {annotation!r}")


def _format_container(origin: type, args: tuple[Any, ...], where: str) -> str:
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"list[{format_type(args[0], where)}]"
    inner = ", ".join(format_type(arg, where) for arg in args)
    kind = "list" if origin is tuple and args else _CONTAINERS[origin]
    return f"{kind}[{inner}]" if inner else kind


def _is_documented(annotation: Any) -> bool:
    return isinstance(annotation, type) and (
        issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)
    )


def format_value(value: Any, where: str) -> str:
    """A default as YAML-like JSON (``null``, ``true``, ``["a", "b"]``); a model as its non-default fields."""
    if isinstance(value, BaseModel):
        changed = value.model_dump(mode="json", exclude_defaults=True)
        if not changed:
            return SEE_MODEL
        return f"{type(value).__name__}({', '.join(f'{k}={json.dumps(v)}' for k, v in changed.items())})"
    try:
        return json.dumps(to_jsonable_python(value))
    except Exception as err:  # pydantic's serialisation errors are not a public class
        raise RenderError(f"{where}: cannot document the default {value!r} ({err})") from err


def format_constraints(metadata: Iterable[Any], where: str) -> str:
    """Pydantic ``Field`` bounds (``ge``, ``lt``, ...) as text; any other metadata is an error."""
    parts = []
    for item in metadata:
        known = _CONSTRAINTS.get(type(item))
        if known is None:
            raise RenderError(f"{where}: cannot document the constraint {item!r}")
        attribute, text = known
        if (isinstance(item, pydantic.types.Strict) and not item.strict) or (
            isinstance(item, pydantic.types.AllowInfNan) and item.allow_inf_nan
        ):
            continue
        parts.append(text.format(getattr(item, attribute)))
    return ", ".join(parts)


def _field_row(model: type[BaseModel], name: str, field: FieldInfo) -> Row:
    where = f"{model.__module__}.{model.__qualname__}.{name}"
    if field.is_required():
        default = REQUIRED
    elif field.default_factory is not None:
        default = format_value(field.get_default(call_default_factory=True), where)
    else:
        default = format_value(field.default, where)
    description = " ".join((field.description or "").split())
    nested = [arg for arg in _walk_args(field.annotation) if _is_documented(arg)]
    links = [f"[{cls.__name__}](#{anchor(cls)})" for cls in nested]
    if links:
        description = f"{description} See {', '.join(links)}.".strip()
    return Row(
        name,
        format_type(field.annotation, where),
        default,
        format_constraints(field.metadata, where),
        description,
    )


def _walk_args(annotation: Any) -> list[Any]:
    found = [annotation]
    for arg in typing.get_args(annotation):
        found.extend(_walk_args(arg))
    return found


def _dataclass_rows(cls: type) -> list[Row]:
    hints = typing.get_type_hints(cls, include_extras=True)
    described = _attribute_descriptions(inspect.getdoc(cls) or "")
    rows = []
    for item in dataclasses.fields(cls):
        if not item.init:
            continue
        where = f"{cls.__module__}.{cls.__qualname__}.{item.name}"
        if item.default is not dataclasses.MISSING:
            default = format_value(item.default, where)
        elif item.default_factory is not dataclasses.MISSING:
            default = format_value(item.default_factory(), where)
        else:
            default = REQUIRED
        rows.append(
            Row(item.name, format_type(hints[item.name], where), default, "", described.get(item.name, ""))
        )
    return rows


def _attribute_descriptions(doc: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` section (continuation lines joined)."""
    described: dict[str, str] = {}
    inside, current = False, None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break
        entry = re.match(r"^ {4}(\w+)(?: \(.*?\))?: (.*)$", line)
        if entry:
            current = entry.group(1)
            described[current] = entry.group(2).strip()
        elif current and line.startswith(" " * 8):
            described[current] += " " + line.strip()
    return described


def rows(cls: Documented) -> list[Row]:
    """One row per field of a pydantic model or a dataclass.

    Raises:
        RenderError: a field whose type, default or constraint the reference cannot show.
    """
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return [_field_row(cls, name, field) for name, field in cls.model_fields.items()]
    if dataclasses.is_dataclass(cls):
        return _dataclass_rows(cls)
    raise RenderError(f"{cls!r} is neither a pydantic model nor a dataclass")


_ROLE = re.compile(r":\w+:`~?([\w.]+)`")
_CODE_SPAN = re.compile(r"(`+).+?\1")


def _docstring(cls: type) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    doc = inspect.cleandoc(doc)
    if dataclasses.is_dataclass(cls):
        doc = doc.split("\nAttributes:", 1)[0].rstrip()
    return _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", doc)


def _cell(text: str) -> str:
    """A table cell: pipes escaped outside code spans (Python-Markdown does not split inside those)."""
    text = text.replace("\n", " ")
    out, position = [], 0
    for span in _CODE_SPAN.finditer(text):
        out += [text[position : span.start()].replace("|", "\\|"), span.group(0)]
        position = span.end()
    return "".join([*out, text[position:].replace("|", "\\|")])


def render_model(cls: Documented, paths: Iterable[str] = ()) -> str:
    """A section for ``cls``: heading, where it sits in the YAML, its docstring and the field table.

    Raises:
        RenderError: see :func:`rows`.
    """
    table = rows(cls)
    lines = [f"### {cls.__name__} {{#{anchor(cls)}}}", ""]
    located = ", ".join(f"`{path}`" for path in paths)
    lines.append(f"`{cls.__module__}.{cls.__qualname__}`" + (f"; YAML: {located}" if located else ""))
    lines.append("")
    doc = _docstring(cls)
    if doc:
        lines += [doc, ""]
    config = getattr(cls, "model_config", {})
    if config.get("extra") == "allow":
        lines += ["Further keys are accepted (see the description above).", ""]
    lines += ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
    for row in table:
        default = row.default if row.default in (REQUIRED, SEE_MODEL) else f"`{row.default}`"
        cells = [f"`{row.name}`", f"`{row.type}`", default, row.constraints, row.description]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class Section:
    """A top-level YAML section and the model that parses it."""

    key: str
    model: Documented
    file: str
    #: Models the top model holds as plain mappings (kubeflow.yml's ``resources``), with their YAML path.
    extra: tuple[tuple[str, Documented], ...] = ()


def sections() -> list[Section]:
    """The parameter sections a pipeline reads (``alloy_mtl.parameters``) and ``kubeflow.yml``."""
    from alloy_mtl.deploy.config import CONFIG_FILE, DEFAULT_KEY, GroupResources, KubeflowConfig
    from alloy_mtl.mtl.params import TrainingParams
    from alloy_mtl.parameters import SECTIONS
    from alloy_mtl.physics.simulator import SimulationConfig
    from alloy_mtl.tracking.promotion import GateSettings

    models: dict[str, Documented] = {
        "training": TrainingParams,
        "generation": SimulationConfig,
        **SECTIONS,
        "registry": GateSettings,
    }
    found = [Section(key, model, _yaml_file(key)) for key, model in models.items()]
    resources = (f"resources.<group or {DEFAULT_KEY}>", GroupResources)
    return [*found, Section("", KubeflowConfig, f"conf/base/{CONFIG_FILE}", (resources,))]


def _yaml_file(key: str) -> str:
    for path in sorted(CONF.glob("parameters_*.yml")):
        if key.partition(".")[0] in (yaml.safe_load(path.read_text()) or {}):
            return str(path.relative_to(ROOT))
    return "(no file sets it: defaults only)"


def _nested(cls: Documented) -> list[tuple[str, Documented]]:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        items = [(name, field.annotation) for name, field in cls.model_fields.items()]
    elif dataclasses.is_dataclass(cls):
        items = list(typing.get_type_hints(cls).items())
    else:
        items = []
    return [
        (name, arg) for name, annotation in items for arg in _walk_args(annotation) if _is_documented(arg)
    ]


def render_reference(
    models: list[Documented] | None = None, top: Callable[[], list[Section]] = sections
) -> str:
    """The whole reference: each section's model and the models under it, then every other model.

    Raises:
        RenderError: a field that cannot be documented.
    """
    models = discover_models() if models is None else models
    order: dict[Documented, list[str]] = {}
    parts = []
    for section in top():
        start = section.key or section.file
        slug = section.key or Path(section.file).name.replace(".", "-")
        parts.append(f"## `{start}` {{#{slug}}}\n\nFile: `{section.file}`.\n")
        queue = [(section.key, section.model), *section.extra]
        local: dict[Documented, list[str]] = {}
        while queue:
            path, cls = queue.pop(0)
            if cls in local:
                local[cls].append(path)
                continue
            local[cls] = [path] if path else []
            queue.extend((f"{path}.{name}" if path else name, sub) for name, sub in _nested(cls))
        shared = [cls for cls in local if cls in order]
        for cls, paths in local.items():
            if cls not in order:
                order[cls] = paths
                parts.append(render_model(cls, paths))
        if shared:
            links = ", ".join(f"[{cls.__name__}](#{anchor(cls)})" for cls in shared)
            parts.append(f"Also used in this section, documented above: {links}.\n")
    rest = [cls for cls in models if cls not in order and cls is not ParamsModel]
    if rest:
        parts.append("## Other models\n\nTyped models that no top-level section above reaches.\n")
        parts.extend(render_model(cls) for cls in rest)
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: replace the marker of the configuration reference page with the generated text."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise RenderError(f"{PAGE} has lost its marker {MARKER}")
    return markdown.replace(MARKER, render_reference())
