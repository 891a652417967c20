"""MkDocs hook: the measured results in ``benchmarks/results/`` become part of the site under ``benchmarks/``.

The tables (``*.md``) become pages and the figures and JSON files are copied, so the results page can link
to the files the benchmark scripts wrote instead of copies that could drift; ``benchmarks/index.md`` lists
them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
PREFIX = "benchmarks/"
SUFFIXES = (".md", ".png", ".json")


def result_files() -> list[Path]:
    """The files of ``benchmarks/results/`` that the site carries, by name."""
    return sorted(p for p in RESULTS.iterdir() if p.is_file() and p.suffix in SUFFIXES)


def resolve(uri: str) -> Path | None:
    """The source file behind a docs-relative ``uri`` under ``benchmarks/`` (None when it is not one)."""
    if not uri.startswith(PREFIX):
        return None
    name = uri.removeprefix(PREFIX)
    if name == "index.md":
        return RESULTS
    path = RESULTS / name
    return path if path.is_file() and path.suffix in SUFFIXES else None


def index() -> str:
    """The listing page of every result file."""
    lines = [
        "# Benchmark files",
        "",
        "Every file that the scripts in `benchmarks/` wrote to `benchmarks/results/`, as committed. "
        "The [results page](../results.md) says which command wrote which and what it shows.",
        "",
    ]
    for path in result_files():
        lines.append(f"- [{path.name}]({path.name})")
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: Any) -> Files:
    """MkDocs event: add the result files and their index."""
    for path in result_files():
        files.append(File.generated(config, PREFIX + path.name, abs_src_path=str(path)))
    files.append(File.generated(config, PREFIX + "index.md", content=index()))
    return files
