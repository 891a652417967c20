"""A content fingerprint of the data a cached step reads, so that KFP's cache cannot lie.

KFP's cache key is the step's component and its input values. A step that reads a lab folder named by a path
parameter would be a cache hit after the folder's files changed at the same path. The compiled pipeline
therefore runs a small, never cached ``data-fingerprint`` task first: it hashes the data source's files (their
relative paths and contents) and hands the digest to every cached step that reads ``params:data_source`` as an
input, so changed data is a different key, a cache miss. Generated data has no files: its parameters are
already in the key.

    python -m alloy_mtl.deploy.fingerprint --kind csv_folder --path data/01_raw/lab --output /tmp/outputs/fp
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

GENERATED = "generated"
CHUNK = 1 << 20


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 over every file under ``folder`` (sorted relative paths, each with its size and content).

    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """
    if not folder.exists():
        raise FileNotFoundError(f"data source path {folder} does not exist: nothing to fingerprint")
    digest = hashlib.sha256()
    files = sorted(p for p in ([folder] if folder.is_file() else folder.rglob("*")) if p.is_file())
    for path in files:
        relative = path.name if path == folder else path.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    logger.info("fingerprinted %d file(s) under %s", len(files), folder)
    return digest.hexdigest()


def data_fingerprint(kind: str, path: str, project_dir: Path | None = None) -> str:
    """The fingerprint of a data source: ``generated`` for generated data, else its folder's
    (a relative ``path`` is taken from ``project_dir``)."""
    if kind == GENERATED or not path:
        return GENERATED
    folder = Path(path)
    if not folder.is_absolute() and project_dir is not None:
        folder = project_dir / folder
    return f"sha256:{folder_fingerprint(folder)}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of the ``data-fingerprint`` task: write the digest to ``--output``."""
    parser = argparse.ArgumentParser(prog="python -m alloy_mtl.deploy.fingerprint", description=__doc__)
    parser.add_argument(
        "--kind", default="", help="the pipeline parameter's value (empty: the configured one)"
    )
    parser.add_argument("--path", default="")
    parser.add_argument("--configured-kind", default=GENERATED)
    parser.add_argument("--configured-path", default="")
    parser.add_argument("--project-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kind, path = args.kind or args.configured_kind, args.path or args.configured_path
    fingerprint = data_fingerprint(kind, path, args.project_dir)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(fingerprint)
    logger.info("data source %s %s: %s", kind, path or "-", fingerprint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
