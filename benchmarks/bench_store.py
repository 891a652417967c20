"""Benchmark of the consolidated array store: DataLoader read throughput and peak memory versus dataset size.

Each case runs in its own subprocess (so ``resource.getrusage`` max RSS belongs to that case alone): open a
memory-mapped float16 store of 3 x 64 x 64 images, iterate one shuffled epoch through a torch DataLoader
(batch 64, ``num_workers`` 0 or 2) and report images/s and memory. Stores of 1x (1000) and 10x (10000)
images are written chunk-wise from random data through ``write_store`` (never a whole in-memory array).

Memory is reported three ways: ``maxrss`` (getrusage peak RSS, which also counts the pages of the mapped
file the process has touched), and the peaks of ``RssAnon`` (private memory the process allocated) and
``RssFile`` (file-backed pages: the page cache of the mapped store, reclaimable) sampled every batch from
/proc/self/status. A store loaded into RAM would grow RssAnon by the store size; a memory map does not.

Run: ``python benchmarks/bench_store.py [--quick]`` -> benchmarks/results/bench_store.json and .md
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.store import XrayData, open_store, write_store

RESULTS_DIR = Path(__file__).resolve().parent / "results"
IMAGE_SHAPE = (3, 64, 64)
BATCH_SIZE = 64
BASE_SIZE = 1000
QUICK_BASE_SIZE = 200


def make_store(directory: Path, n_images: int, seed: int = 0, chunk: int = 500) -> Path:
    """Write a store of ``n_images`` random float16 images, generating and copying ``chunk`` at a time."""
    rng = np.random.default_rng(seed)
    source_path = directory / f"source_{n_images}.npy"
    source = np.lib.format.open_memmap(
        source_path, mode="w+", dtype=np.float16, shape=(n_images, *IMAGE_SHAPE)
    )
    for start in range(0, n_images, chunk):
        stop = min(start + chunk, n_images)
        source[start:stop] = rng.random((stop - start, *IMAGE_SHAPE), dtype=np.float32)
    source.flush()
    del source
    alloys = np.array(ALLOYS)[rng.integers(0, len(ALLOYS), n_images)]
    metadata = pd.DataFrame(
        {
            "image_id": [f"img-{i}" for i in range(n_images)],
            "specimen_id": [f"spec-{i // 4}" for i in range(n_images)],
            "alloy": alloys,
            "thickness_mm": rng.uniform(0.5, 20.0, n_images),
            "absorption": rng.uniform(1.0, 10.0, n_images),
            "kv": "40,60,80",
            "source": "generated",
            "path": "",
        }
    )
    store = write_store(
        XrayData(np.load(source_path, mmap_mode="r"), metadata),
        directory / f"store_{n_images}",
        dtype="float16",
    )
    source_path.unlink()
    return store


def _proc_status_mb() -> dict[str, float]:
    """RssAnon and RssFile of this process in MiB (Linux)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def child(store: str, num_workers: int, seed: int = 0) -> dict[str, Any]:
    """One case, run inside a fresh process: open the store and iterate one shuffled epoch."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class StoreDataset(Dataset):
        """Images of a store as float32 tensors with the alloy index; the store is opened lazily per process."""

        def __init__(self, directory: str) -> None:
            self.directory = directory
            self.images: np.ndarray | None = None
            metadata = open_store(directory).metadata
            self.labels = metadata["alloy"].map({a: i for i, a in enumerate(ALLOYS)}).to_numpy()

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            if self.images is None:
                self.images = open_store(self.directory).images
            return torch.from_numpy(self.images[index].astype(np.float32)), int(self.labels[index])

    torch.manual_seed(seed)
    baseline = {"maxrss_mb": _maxrss_mb(resource.RUSAGE_SELF), **_proc_status_mb()}
    loader = DataLoader(
        StoreDataset(store),
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
    peak = dict(_proc_status_mb())
    n_images, checksum, first_batch_s = 0, 0.0, None
    start = time.perf_counter()
    for images, _labels in loader:
        n_images += len(images)
        checksum += float(images[:, 0, 0, 0].sum())
        if first_batch_s is None:
            first_batch_s = time.perf_counter() - start
            first_batch_images = len(images)
        for key, value in _proc_status_mb().items():
            peak[key] = max(peak[key], value)
    seconds = time.perf_counter() - start
    steady = (
        (n_images - first_batch_images) / (seconds - first_batch_s) if n_images > first_batch_images else None
    )
    return {
        "n_images": n_images,
        "num_workers": num_workers,
        "epoch_s": seconds,
        "images_per_s": n_images / seconds,
        "images_per_s_after_first_batch": steady,
        "first_batch_s": first_batch_s,
        "baseline_maxrss_mb": baseline["maxrss_mb"],
        "baseline_rss_anon_mb": baseline["RssAnon"],
        "maxrss_mb": _maxrss_mb(resource.RUSAGE_SELF),
        "peak_rss_anon_mb": peak["RssAnon"],
        "peak_rss_file_mb": peak["RssFile"],
        "workers_maxrss_mb": _maxrss_mb(resource.RUSAGE_CHILDREN) if num_workers else None,
        "checksum": checksum,
    }


def _run_case(store: Path, num_workers: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(store), "--workers", str(num_workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, Any]:
    """Write 1x and 10x stores, run every (size, num_workers) case in a subprocess, return the results."""
    base = QUICK_BASE_SIZE if quick else BASE_SIZE
    cases = []
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        for scale in (1, 10):
            n = base * scale
            start = time.perf_counter()
            store = make_store(Path(tmp), n)
            write_s = time.perf_counter() - start
            store_mb = (store / "images.npy").stat().st_size / 2**20
            for num_workers in (0, 2):
                case = _run_case(store, num_workers)
                cases.append({"scale": f"{scale}x", "store_mb": store_mb, "write_store_s": write_s, **case})
    by_workers = {w: [c for c in cases if c["num_workers"] == w] for w in (0, 2)}
    return {
        "benchmark": "bench_store",
        "quick": quick,
        "image_shape": list(IMAGE_SHAPE),
        "dtype": "float16",
        "batch_size": BATCH_SIZE,
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": _cpus()},
        "cases": cases,
        "rss_anon_growth_10x_vs_1x_mb": {
            str(w): rows[1]["peak_rss_anon_mb"] - rows[0]["peak_rss_anon_mb"]
            for w, rows in by_workers.items()
        },
        "store_growth_10x_vs_1x_mb": cases[-1]["store_mb"] - cases[0]["store_mb"],
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def markdown(result: dict[str, Any]) -> str:
    """The cases as a markdown table."""
    lines = [
        "| size | images | store MiB | workers | img/s (epoch) | img/s (after 1st batch) | maxrss MiB "
        "| peak RssAnon MiB | peak RssFile MiB | worker maxrss MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        steady = c["images_per_s_after_first_batch"]
        workers = c["workers_maxrss_mb"]
        lines.append(
            f"| {c['scale']} | {c['n_images']} | {c['store_mb']:.1f} | {c['num_workers']} "
            f"| {c['images_per_s']:.0f} | {steady:.0f} | {c['maxrss_mb']:.0f} | {c['peak_rss_anon_mb']:.0f} "
            f"| {c['peak_rss_file_mb']:.0f} | {'-' if workers is None else f'{workers:.0f}'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 / 2000 images instead of 1000 / 10000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.workers)))
        return
    result = run(quick=args.quick)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_store.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (RESULTS_DIR / "bench_store.md").write_text(table + "\n")
    print(json.dumps(result, indent=2))
    print(table)


if __name__ == "__main__":
    main()
