"""The layout of ``alloy_mtl.mtl``: sub-packages that re-export nothing, no import cycles, small modules, and
the old flat module paths still importing as aliases of their new homes."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

import alloy_mtl
from alloy_mtl.mtl._moved import MOVED_MODULES

PACKAGE_DIR = Path(alloy_mtl.__file__).resolve().parent
MTL_DIR = PACKAGE_DIR / "mtl"
MAX_MODULE_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_imports(path: Path) -> set[str]:
    """``alloy_mtl`` modules imported when ``path`` is imported: module-level imports outside
    ``if TYPE_CHECKING:`` (imports inside functions run later and cannot form an import-time cycle)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                pending.extend(node.orelse)
                continue
            pending.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("alloy_mtl."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alloy_mtl."):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in _import_time_imports(path) if t in modules}
        # importing a.b.c runs a/__init__ and a/b/__init__ first, unless they are this module's own
        # packages, which are already being initialised when this module runs
        for target in list(targets):
            parts = target.split(".")
            parents = (".".join(parts[:i]) for i in range(2, len(parts)))
            targets.update(p for p in parents if p in modules and not name.startswith(f"{p}."))
        graph[name] = {t for t in targets if t != name and not name.startswith(f"{t}.")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_package_has_no_import_time_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_mtl_sub_packages_re_export_nothing() -> None:
    for init in MTL_DIR.glob("*/__init__.py"):
        tree = ast.parse(init.read_text())
        imports = [
            n
            for n in tree.body
            if (isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("alloy_mtl")))
            or (isinstance(n, ast.Import) and any(a.name.startswith("alloy_mtl") for a in n.names))
        ]
        if init.parent.name == "gradients":  # the gradient-method registry is the package's own API
            continue
        assert imports == [], f"{init.relative_to(PACKAGE_DIR)} imports project modules at package level"


def test_no_mtl_module_is_over_the_size_limit() -> None:
    sizes = {p.relative_to(PACKAGE_DIR): len(p.read_text().splitlines()) for p in MTL_DIR.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_moved_module_has_a_new_home_and_no_old_file_remains() -> None:
    for old, new in MOVED_MODULES.items():
        assert importlib.util.find_spec(new) is not None, new
        old_file = PACKAGE_DIR.parent.joinpath(*old.split(".")).with_suffix(".py")
        assert not old_file.exists(), f"{old_file} shadows the alias"


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_module_path_imports_the_new_module_with_a_warning(old: str) -> None:
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED_MODULES[old])
    assert any(
        issubclass(w.category, DeprecationWarning) and MOVED_MODULES[old] in str(w.message) for w in caught
    )


def test_an_unknown_old_path_still_fails() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("alloy_mtl.mtl.no_such_module")


def test_the_old_losses_module_names_resolve_lazily_from_the_losses_package() -> None:
    from alloy_mtl.mtl.losses import task_losses

    with pytest.warns(DeprecationWarning, match="task_losses"):
        from alloy_mtl.mtl.losses import LOSSES  # the old module path, now a package
    assert LOSSES is task_losses.LOSSES
    with pytest.raises(ImportError):
        from alloy_mtl.mtl.losses import no_such_name  # noqa: F401
