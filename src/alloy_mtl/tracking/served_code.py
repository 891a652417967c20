"""The code a logged model carries: the pyfunc's ``alloy_mtl`` import closure, vendored under a private name.

MLflow puts a model's ``code/`` folder at the front of ``sys.path`` when it loads the model. A partial copy of
``alloy_mtl`` there would shadow the installed package for the rest of the process (``import
alloy_mtl.physics`` would fail after loading the champion in a notebook), so the copy is written as
``_alloy_mtl_served_<hash>``: the same files with their ``alloy_mtl`` import statements renamed (strings,
comments and docstrings are left as they are), and the pyfunc file itself rewritten to import from it. The
hash is of the copied sources, so two models logged from different code loaded in one process each run their
own code.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import shutil
import sys
import threading
import tokenize
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import alloy_mtl

PACKAGE = "alloy_mtl"
PACKAGE_DIR = Path(alloy_mtl.__file__).resolve().parent
SERVED_PREFIX = "_alloy_mtl_served_"
"""The vendored package is named this plus 12 hex digits of the hash of its sources."""
_IMPORTABLE = threading.Lock()


@dataclass(frozen=True)
class ServedCode:
    """A vendored copy: ``folder`` (the ``code_paths`` entry) holds package ``package``; ``model_file`` is the
    rewritten pyfunc file (MLflow's ``python_model``)."""

    folder: Path
    package: str
    model_file: Path


def module_closure(entry: Path, package_dir: Path = PACKAGE_DIR, package: str = PACKAGE) -> list[Path]:
    """Source files of ``package`` that ``entry`` imports, directly or through each other (static, via
    the AST), plus the ``__init__.py`` of every package on their way. Sorted, relative to ``package_dir``.

    Raises:
        FileNotFoundError: an imported ``package`` module has no source file.
    """
    found: set[Path] = set()
    pending = [entry.resolve()]
    while pending:
        source = pending.pop()
        for module in _imported_modules(source, package_dir, package):
            path = _module_file(module, package_dir, package)
            for init in _package_inits(path, package_dir):
                if init not in found:
                    found.add(init)
                    pending.append(init)
            if path not in found:
                found.add(path)
                pending.append(path)
    found.add(package_dir / "__init__.py")
    return sorted(p.relative_to(package_dir) for p in found)


def vendor_model_code(
    model_file: Path, destination: Path, package_dir: Path = PACKAGE_DIR, package: str = PACKAGE
) -> ServedCode:
    """Write ``model_file``'s closure of ``package`` under ``destination/code/<private name>/`` and
    ``model_file`` itself as ``destination/<its name>``, every ``package`` import renamed to the private name.

    Raises:
        ValueError: a copied file binds the package's own name (``import alloy_mtl.x`` without ``as``), which
            a rename would break; write ``from alloy_mtl.x import ...`` there.
    """
    closure = module_closure(model_file, package_dir, package)
    digest = hashlib.sha256(model_file.read_bytes())
    for relative in closure:
        digest.update(str(relative).encode() + b"\0" + (package_dir / relative).read_bytes())
    served = SERVED_PREFIX + digest.hexdigest()[:12]
    folder = destination / "code"
    for relative in closure:
        target = folder / served / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        source = package_dir / relative
        target.write_text(rename_package_imports(source.read_text(), package, served, str(source)))
        shutil.copystat(source, target)
    rewritten = destination / model_file.name
    rewritten.write_text(rename_package_imports(model_file.read_text(), package, served, str(model_file)))
    return ServedCode(folder=folder, package=served, model_file=rewritten)


def rename_package_imports(source: str, package: str, new: str, filename: str = "<source>") -> str:
    """``source`` with ``package`` renamed to ``new`` in its absolute import statements, and nowhere else.

    Raises:
        ValueError: ``import package[.x]`` without ``as`` (it binds the name ``package``).
    """
    tree = ast.parse(source, filename=filename)
    statements: list[ast.Import | ast.ImportFrom] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_top(a.name) == package for a in node.names):
            unbound = [a.name for a in node.names if _top(a.name) == package and a.asname is None]
            if unbound:
                raise ValueError(
                    f"{filename}:{node.lineno}: `import {unbound[0]}` binds the name {package}, which the "
                    f"served copy renames; write `from {unbound[0]} import ...` or `import ... as ...`"
                )
            statements.append(node)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _top(node.module or "") == package:
            statements.append(node)
    lines = source.splitlines(keepends=True)
    for row, col in sorted(_package_name_tokens(source, statements, package), reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + new + line[col + len(package) :]
    renamed = "".join(lines)
    left = package_imports(renamed, package)
    if left:
        raise RuntimeError(f"{filename}: imports of {left} left after renaming {package}")
    return renamed


def package_imports(source: str, package: str = PACKAGE) -> list[str]:
    """The absolute module names ``source`` imports from ``package`` (at any depth, type-only ones too)."""
    modules = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.extend(a.name for a in node.names if _top(a.name) == package)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _top(node.module or "") == package:
            modules.append(str(node.module))
    return modules


@contextmanager
def importable(code: ServedCode) -> Iterator[None]:
    """``code``'s package importable for the duration (MLflow runs the model file when it logs it, and loads
    a temporary copy of the model to check the input example). Afterwards ``sys.path`` loses ``code``'s
    folder and the folders added meanwhile that no longer exist (MLflow's deleted copy), ``sys.modules`` the
    package's modules. One at a time in a process: threads of a parallel runner log models concurrently."""
    folder = str(code.folder)
    with _IMPORTABLE:
        paths, modules = set(sys.path), set(sys.modules)
        sys.path.insert(0, folder)
        try:
            yield
        finally:
            sys.path[:] = [p for p in sys.path if p in paths or (p != folder and os.path.exists(p))]
            for name in set(sys.modules) - modules:
                if _top(name) == code.package:
                    del sys.modules[name]


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _package_name_tokens(
    source: str, statements: list[ast.Import | ast.ImportFrom], package: str
) -> list[tuple[int, int]]:
    """(row, column) of each ``package`` token that starts a module path in one of ``statements``: the name
    right after ``from`` in ``from ... import``, after ``import`` or a comma in ``import ...``."""
    spans = [
        ((s.lineno, s.col_offset), (s.end_lineno or s.lineno, s.end_col_offset or 0), s) for s in statements
    ]
    positions = []
    previous = ""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
            continue
        if token.type == tokenize.NAME and token.string == package:
            for start, end, statement in spans:
                if not start <= token.start < end:
                    continue
                starts_path = ("import", ",") if isinstance(statement, ast.Import) else ("from",)
                if previous in starts_path:
                    positions.append(token.start)
        previous = token.string
    return positions


def _imported_modules(source: Path, package_dir: Path, package: str) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    here = _module_name(source, package_dir, package)
    modules: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if _top(a.name) == package)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and here is not None:
                parts = here.split(".") if source.name == "__init__.py" else here.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            if _top(base) != package:
                continue
            modules.add(base)
            modules.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in modules if _module_file(m, package_dir, package, missing_ok=True) is not None}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (imports for type hints only)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_name(source: Path, package_dir: Path, package: str) -> str | None:
    try:
        relative = source.resolve().relative_to(package_dir)
    except ValueError:
        return None
    parts = [package, *relative.with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_file(module: str, package_dir: Path, package: str, missing_ok: bool = False) -> Path | None:
    parts = module.split(".")[1:]
    candidates = [
        package_dir.joinpath(*parts).with_suffix(".py"),
        package_dir.joinpath(*parts, "__init__.py"),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    if missing_ok:
        return None
    raise FileNotFoundError(f"module {module} has no source file under {package_dir}")


def _package_inits(path: Path, package_dir: Path) -> list[Path]:
    inits = []
    folder = path.parent
    while folder != package_dir.parent and package_dir in (folder, *folder.parents):
        inits.append((folder / "__init__.py").resolve())
        folder = folder.parent
    return inits
