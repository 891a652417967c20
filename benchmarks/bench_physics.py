"""Benchmark of the physics package: simulator throughput and the physics-limit (maximum-likelihood) ceiling.

* Generator: images/s of ``simulate_dataset`` at 32x32x3 and 64x64x3 (default nuisances), on one core
  (BLAS limited to 1 thread with threadpoolctl), best of 3 runs.
* Physics limit: ``PhysicsLimitEstimator`` on a fresh default dataset (seed 2024, not a seed used in
  development): accuracy, per-alloy recall, balanced accuracy, thickness and absorption errors, and the
  estimator's own speed. Full mode adds the ceiling for single-energy (50 kV) images and for 64x64 images.

Run: ``python benchmarks/bench_physics.py [--quick]`` -> benchmarks/results/bench_physics.json and .md
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from alloy_mtl.constants import ALLOYS
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOLDOUT_SEED = 2024


def generator_throughput(image_size: int, n_images: int, repeats: int = 3) -> dict[str, Any]:
    """Best-of-``repeats`` images/s of the default simulator at ``image_size`` on one core."""
    config = SimulationConfig(seed=1, n_images=n_images, image_size=image_size)
    simulate_dataset(SimulationConfig(n_images=10, image_size=image_size))  # warm caches (xraydb, spectra)
    best = np.inf
    with threadpool_limits(limits=1):
        for _ in range(repeats):
            start = time.perf_counter()
            images, _ = simulate_dataset(config)
            best = min(best, time.perf_counter() - start)
    return {
        "shape": f"{image_size}x{image_size}x{images.shape[1]}",
        "n_images": int(images.shape[0]),
        "seconds": round(best, 3),
        "images_per_s": round(images.shape[0] / best, 1),
    }


def physics_limit(config: SimulationConfig) -> dict[str, Any]:
    """Accuracy and regression errors of the physics-limit estimator on a dataset simulated from ``config``."""
    images, meta = simulate_dataset(config)
    start = time.perf_counter()
    estimator = PhysicsLimitEstimator(config)
    built = time.perf_counter()
    pred = estimator.predict(images)
    done = time.perf_counter()
    truth = meta["alloy"].to_numpy()
    correct = pred["alloy_pred"].to_numpy() == truth
    recall = {a: round(float(correct[truth == a].mean()), 4) for a in ALLOYS if (truth == a).any()}
    support = {a: int((truth == a).sum()) for a in ALLOYS}
    thickness_err = pred["thickness_pred"].to_numpy() - meta["thickness_mm"].to_numpy()
    absorption_err = pred["absorption_pred"].to_numpy() - meta["absorption"].to_numpy()
    probs = pred[[f"prob_{a}" for a in ALLOYS]].to_numpy()
    true_index = np.array([ALLOYS.index(a) for a in truth])
    return {
        "n_images": int(len(meta)),
        "shape": f"{config.image_size}x{config.image_size}x{len(config.kv)}",
        "kv": config.kv_label,
        "accuracy": round(float(correct.mean()), 4),
        "balanced_accuracy": round(float(np.mean(list(recall.values()))), 4),
        "recall": recall,
        "support": support,
        "log_loss": round(
            float(-np.mean(np.log(np.clip(probs[np.arange(len(meta)), true_index], 1e-12, 1)))), 4
        ),
        "thickness_mae_mm": round(float(np.mean(np.abs(thickness_err))), 4),
        "thickness_rel_rmse": round(float(np.sqrt(np.mean((thickness_err / meta["thickness_mm"]) ** 2))), 5),
        "absorption_mae_per_cm": round(float(np.mean(np.abs(absorption_err))), 4),
        "absorption_rel_rmse": round(float(np.sqrt(np.mean((absorption_err / meta["absorption"]) ** 2))), 5),
        "estimator_build_s": round(built - start, 3),
        "estimator_predict_s": round(done - built, 3),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; ``quick`` uses fewer images and skips the extra ceilings."""
    n_gen = 500 if quick else 2000
    results: dict[str, Any] = {
        "benchmark": "bench_physics",
        "quick": quick,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "generator": [generator_throughput(32, n_gen), generator_throughput(64, n_gen)],
        "physics_limit": {"default": physics_limit(SimulationConfig(seed=HOLDOUT_SEED))},
    }
    if not quick:
        results["physics_limit"]["single_energy_50kv"] = physics_limit(
            SimulationConfig(seed=HOLDOUT_SEED, kv=(50.0,))
        )
        results["physics_limit"]["default_64px"] = physics_limit(
            SimulationConfig(seed=HOLDOUT_SEED, image_size=64)
        )
    return results


def to_markdown(results: dict[str, Any]) -> str:
    """Markdown tables of the results."""
    lines = [
        "# bench_physics",
        "",
        "| generator shape | images | seconds | images/s (1 core) |",
        "|---|---|---|---|",
    ]
    for row in results["generator"]:
        lines.append(f"| {row['shape']} | {row['n_images']} | {row['seconds']} | {row['images_per_s']} |")
    lines += [
        "",
        "| physics limit | shape | accuracy | balanced acc | "
        + " | ".join(f"recall {a}" for a in ALLOYS)
        + " | thickness MAE (mm) | absorption MAE (1/cm) | predict s |",
        "|---" * (7 + len(ALLOYS)) + "|",
    ]
    for name, row in results["physics_limit"].items():
        recalls = " | ".join(str(row["recall"].get(a, "")) for a in ALLOYS)
        lines.append(
            f"| {name} | {row['shape']} | {row['accuracy']} | {row['balanced_accuracy']} | {recalls} | "
            f"{row['thickness_mae_mm']} | {row['absorption_mae_per_cm']} | {row['estimator_predict_s']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command line entry point: run, print and write JSON + markdown to benchmarks/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, skip the extra ceilings")
    args = parser.parse_args()
    results = run(quick=args.quick)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_physics.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = to_markdown(results)
    (RESULTS_DIR / "bench_physics.md").write_text(markdown)
    print(json.dumps(results, indent=2))
    print(markdown)


if __name__ == "__main__":
    main()
