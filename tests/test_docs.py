"""The documentation: README size and links, and the configuration reference generated from the models."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from alloy_mtl.config.base import ParamsModel

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 250
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"(`+).+?\1")


def _hook(name: str) -> Any:
    path = DOCS / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _relative_links(path: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text()))
    links = [m.group(1) for m in LINK.finditer(text)]
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", link)]


def test_readme_is_at_most_250_lines() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_every_relative_link_in_readme_and_docs_points_to_a_file() -> None:
    benchmarks = _hook("benchmarks")
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    broken = []
    for page in pages:
        for link in _relative_links(page):
            target = link.split("#", 1)[0]
            if not target:
                continue
            found = (page.parent / target).resolve().exists()
            if not found and page.parent.resolve() == DOCS.resolve():
                found = benchmarks.resolve(target) is not None  # files the benchmarks hook publishes
            if not found:
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert pages and not broken, broken


def test_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](missing.md) `[code](no.md)` [web](https://example.org) [a](#x)\n")
    assert _relative_links(page) == ["page.md", "missing.md"]


def test_readme_test_commands_are_the_ci_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in ci if line.startswith("python -m pytest")]
    assert commands == ["python -m pytest", "python -m pytest -m slow"]
    assert all(f"`{command}`" in readme for command in commands)
    assert "mkdocs build --strict" in " ".join(ci)


@pytest.fixture(scope="module")
def reference() -> tuple[Any, str]:
    module = _hook("config_reference")
    return module, module.render_reference()


def _sections(text: str) -> dict[str, str]:
    """Anchor -> the text of that model's section."""
    parts = re.split(r"^### ", text, flags=re.M)[1:]
    return {re.search(r"\{#([\w-]+)\}", part).group(1): part for part in parts}


def _params_models() -> list[type[ParamsModel]]:
    found, pending = [], list(ParamsModel.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        # a private base (tasks' _Smoothing) is documented through its public subclasses' rows
        if cls.__module__.startswith("alloy_mtl.") and not cls.__name__.startswith("_"):
            found.append(cls)
    return found


def _expected_default(field: Any, see_model: str) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return f"`{type(value).__name__}(" if value.model_fields_set else see_model
    return f"`{json.dumps(to_jsonable_python(value))}`"


def test_reference_has_a_row_with_its_default_for_every_field_of_every_params_model(reference) -> None:
    module, text = reference
    sections = _sections(text)
    models = _params_models()
    assert len(models) >= 20  # every section's model is imported by the generator's discovery
    for model in models:
        section = sections[module.anchor(model)]
        for name, field in model.model_fields.items():
            row = next((line for line in section.splitlines() if line.startswith(f"| `{name}` |")), None)
            assert row is not None, f"{model.__name__}.{name} has no row"
            default = re.split(r" \| (?=(?:[^`]*`[^`]*`)*[^`]*$)", row)[2]  # pipes outside code spans
            assert default.startswith(_expected_default(field, module.SEE_MODEL)), (model, name, default)


def test_reference_shows_types_constraints_and_descriptions(reference) -> None:
    module, text = reference
    from alloy_mtl.mtl.params import TrainingParams
    from alloy_mtl.mtl.trainer_settings import LRScheduler
    from alloy_mtl.tuning.params import TuningParams

    training = _sections(text)[module.anchor(TrainingParams)]
    assert "| `epochs` | `int` | `10` | >= 1 | Epochs to train" in training
    assert "| `time_budget_s` | `float | null` | `null` | > 0 |" in training
    assert "| `arch` | `str` | required |" in training
    assert "YAML: `training`" in training
    scheduler = _sections(text)[module.anchor(LRScheduler)]
    assert "| `factor` | `float` | `0.1` | > 0, < 1 |" in scheduler
    assert "YAML: `training.lr_scheduler`" in scheduler
    tuning = _sections(text)[module.anchor(TuningParams)]
    assert "| `lr` | `LogRange` | `LogRange(low=0.0001, high=0.03)` |" in tuning
    assert "## `conf/base/kubeflow.yml`" in text and "### GroupResources" in text
    assert "### SimulationConfig" in text and "| `n_images` | `int` | `1000` |" in text


class _Opaque:
    pass


class _OpaqueField(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: _OpaqueField | _Opaque | None = None


class _UnknownConstraint(ParamsModel):
    count: Annotated[int, "made-up"] = 1


class _Documented(ParamsModel):
    """Shown."""

    size: int = Field(3, ge=1, le=9)
    """How big."""


def test_reference_refuses_what_it_cannot_render(reference) -> None:
    module, _ = reference
    with pytest.raises(module.RenderError, match=r"_OpaqueField\.thing: cannot document the type"):
        module.render_model(_OpaqueField)
    with pytest.raises(
        module.RenderError, match=r"_UnknownConstraint\.count: cannot document the constraint"
    ):
        module.render_model(_UnknownConstraint)
    with pytest.raises(module.RenderError, match="neither a pydantic model nor a dataclass"):
        module.rows(_Opaque)
    page = type("Page", (), {"file": type("File", (), {"src_uri": module.PAGE})()})()
    with pytest.raises(module.RenderError, match="lost its marker"):
        module.on_page_markdown("# no marker", page, None, None)
    rendered = module.render_model(_Documented)
    assert "| `size` | `int` | `3` | >= 1, <= 9 | How big. |" in rendered and "Shown." in rendered
