"""CPU data-parallel: ``torchrun`` with 2 gloo processes against 1 process on the same global batch.

Each configuration trains resnet18 on the small synthetic stand-in of ``bench_gpu.py`` (16x16x3 images)
with ``train_from_params`` for a few epochs, for equal weighting and exact PCGrad; rank 0 reports the
median epoch time after the first. One thread per process, so 2 processes use 2 cores where 1 uses one:
on a machine whose cores are otherwise idle the speed-up is the scaling of DDP's all-reduce overhead.

Run: ``PYTHONPATH=src python benchmarks/bench_ddp.py``; writes ``benchmarks/results/bench_ddp_cpu.json|md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
METHODS = ("equal", "pcgrad")
GLOBAL_BATCH = 32


def worker(out: Path, images: int, epochs: int) -> None:
    """One torchrun process: train each method, rank 0 writes the epoch times."""
    import torch
    from bench_gpu import TASK_PARAMS, stand_in_data

    from alloy_mtl.mtl.parallel.process_group import is_main_process
    from alloy_mtl.mtl.recipe import train_from_params

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    data, metadata = stand_in_data(images, 16, seed=2)
    results: dict[str, Any] = {"world_size": world, "per_rank_batch": GLOBAL_BATCH // world}
    for method in METHODS:
        params = {
            "arch": "resnet18", "optimizer": "adam", "lr": 1e-3, "epochs": epochs,
            "batch_size": GLOBAL_BATCH // world, "tasks": TASK_PARAMS, "progress_bar": False, "device": "cpu",
            "early_stopping": {"enabled": False}, "gradient_method": {"name": method, "diagnostics_every": 0},
        }  # fmt: skip
        result = train_from_params(data, metadata, params)
        epoch_s = statistics.median(result.history["epoch_time_s"].iloc[1:])
        results[method] = {"epoch_s": epoch_s, "train_img_per_s": result.summary["n_train_images"] / epoch_s}
    if is_main_process():
        out.write_text(json.dumps(results, indent=2))


def launch(nproc: int, out: Path, images: int, epochs: int) -> float:
    """Run ``torchrun --standalone --nproc_per_node=nproc`` on this script's worker; returns the wall time."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [torchrun, "--standalone", f"--nproc_per_node={nproc}", __file__, "--worker", str(out)]
    start = time.perf_counter()
    subprocess.run([*command, "--images", str(images), "--epochs", str(epochs)], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    """CLI: launcher (default) or ``--worker OUT`` (what torchrun starts)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.images, args.epochs)
        return
    results: dict[str, Any] = {
        "config": {"images": args.images, "epochs": args.epochs, "global_batch": GLOBAL_BATCH}
    }
    with tempfile.TemporaryDirectory() as folder:
        for nproc in (1, 2):
            out = Path(folder) / f"nproc{nproc}.json"
            wall = launch(nproc, out, args.images, args.epochs)
            results[f"nproc{nproc}"] = {**json.loads(out.read_text()), "launch_wall_s": wall}
    one, two = results["nproc1"], results["nproc2"]
    results["speedup_2_over_1"] = {m: one[m]["epoch_s"] / two[m]["epoch_s"] for m in METHODS}
    results["pcgrad_over_equal"] = {
        k: results[k]["pcgrad"]["epoch_s"] / results[k]["equal"]["epoch_s"] for k in ("nproc1", "nproc2")
    }
    results["environment"] = {
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    lines = [
        "# bench_ddp (CPU, gloo, resnet18 16x16x3, global batch 32)",
        "",
        "| processes | method | epoch s | train img/s | speed-up vs 1 | pcgrad / equal |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("nproc1", "nproc2"):
        for method in METHODS:
            row = results[key][method]
            speedup = 1.0 if key == "nproc1" else results["speedup_2_over_1"][method]
            ratio = results["pcgrad_over_equal"][key] if method == "pcgrad" else 1.0
            lines.append(
                f"| {key[-1]} | {method} | {row['epoch_s']:.2f} | {row['train_img_per_s']:.0f} | {speedup:.2f} | {ratio:.2f} |"
            )
    lines.append(
        f"\nLoad average at the end {results['environment']['load_average']}; {os.cpu_count()} cores."
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_ddp_cpu.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "bench_ddp_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
