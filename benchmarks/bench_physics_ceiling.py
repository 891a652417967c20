"""Benchmark of the tolerance-aware physics ceiling on the robustness suite's conditions.

For every default robustness condition (``RobustnessParams()``, 1000 balanced images from the ``generation``
block of ``conf/base/parameters_data_processing.yml``) and for a few combinations of tolerances inside the
declared ranges (as the issue's held-out conditions will be), macro AP (scikit-learn average precision per
class, macro) of the physics-limit estimator

* told the nominal instrument (today's ceiling),
* told the declared tolerances (``tolerances=TOLERANCES``, joint batch fit of the instrument),
* told the condition's true instrument (the ceiling if the beam were calibrated exactly),

with the tolerance-aware estimator's seconds per condition (wall and CPU, BLAS on one thread) and its
fitted instrument.

Run: ``python benchmarks/bench_physics_ceiling.py [--quick]`` -> benchmarks/results/bench_physics_ceiling.json
and .md (``--quick``: 200 images, three conditions).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import average_precision_score
from threadpoolctl import threadpool_limits

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.params import InstrumentOverrides, RobustnessParams
from alloy_mtl.evaluation.robustness import apply_overrides, condition_configs
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
TOLERANCES: dict[str, tuple[float, float]] = {
    "kv_scale": (0.97, 1.03),
    "al_filter_mm": (0.7, 1.3),
    "scintillator_mm": (0.15, 0.3),
    "scatter_fraction_scale": (0.5, 2.0),
    "blur_sigma_px": (0.5, 1.0),
    "dose_scale": (0.5, 2.0),
}
COMBINATIONS: dict[str, dict[str, float]] = {
    "combo_a": {
        "kv_scale": 0.98,
        "al_filter_mm": 0.8,
        "scintillator_mm": 0.25,
        "scatter_fraction_scale": 1.5,
        "blur_sigma_px": 0.9,
        "dose_scale": 0.7,
    },
    "combo_b": {
        "kv_scale": 1.025,
        "al_filter_mm": 1.2,
        "scintillator_mm": 0.17,
        "scatter_fraction_scale": 0.6,
        "blur_sigma_px": 0.55,
        "dose_scale": 1.8,
    },
    "combo_c": {"kv_scale": 0.972, "al_filter_mm": 1.25, "scatter_fraction_scale": 1.8},
}


def macro_ap(pred: pd.DataFrame, truth: np.ndarray) -> float:
    """Macro average of the per-class average precision (one-vs-rest)."""
    return float(np.mean([average_precision_score(truth == a, pred[f"prob_{a}"]) for a in ALLOYS]))


def conditions(n_images: int, quick: bool) -> dict[str, SimulationConfig]:
    """The default suite's conditions plus the in-tolerance combinations, at ``n_images`` images."""
    generation = yaml.safe_load((ROOT / "conf/base/parameters_data_processing.yml").read_text())["generation"]
    configs = condition_configs(generation, RobustnessParams(n_images=n_images))
    base = configs["same_detector"]
    for name, values in COMBINATIONS.items():
        configs[name] = apply_overrides(base, InstrumentOverrides(**values))
    if quick:
        configs = {name: configs[name] for name in ("same_detector", "kv_x1.02", "combo_a")}
    return configs


def run(quick: bool = False) -> dict[str, Any]:
    """Score the three estimators on every condition (BLAS limited to one thread)."""
    configs = conditions(200 if quick else 1000, quick)
    nominal = configs["same_detector"]
    rows = []
    with threadpool_limits(limits=1):
        told_nominal = PhysicsLimitEstimator(nominal)
        tolerant = PhysicsLimitEstimator(nominal, tolerances=TOLERANCES)
        for name, config in configs.items():
            images, meta = simulate_dataset(config)
            truth = meta["alloy"].to_numpy()
            wall, cpu = time.perf_counter(), time.process_time()
            pred = tolerant.predict(images)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rows.append(
                {
                    "condition": name,
                    "n_images": len(meta),
                    "nominal_told": round(macro_ap(told_nominal.predict(images), truth), 4),
                    "tolerance_told": round(macro_ap(pred, truth), 4),
                    "instrument_told": round(
                        macro_ap(PhysicsLimitEstimator(config).predict(images), truth), 4
                    ),
                    "seconds_wall": round(wall, 1),
                    "seconds_cpu": round(cpu, 1),
                    "fitted_instrument": {k: round(v, 4) for k, v in tolerant.fitted_instrument.items()},
                }
            )
            print(rows[-1], flush=True)
    return {
        "benchmark": "bench_physics_ceiling",
        "quick": quick,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "tolerances": TOLERANCES,
        "n_fit_images": tolerant.n_fit_images,
        "combinations": COMBINATIONS,
        "rows": rows,
    }


def to_markdown(results: dict[str, Any]) -> str:
    """Markdown table of the results."""
    ranges = ", ".join(f"{k} [{lo}, {hi}]" for k, (lo, hi) in results["tolerances"].items())
    lines = [
        "# bench_physics_ceiling",
        "",
        f"Macro AP of the physics-limit estimator per condition. Tolerances: {ranges}; the tolerance-told "
        f"estimator fits one instrument per condition on {results['n_fit_images']} images, then predicts all.",
        "Combinations: "
        + "; ".join(f"{name} = {values}" for name, values in results["combinations"].items()),
        "",
        "| condition | images | told nominal | told tolerances | told true instrument | s wall | s CPU "
        "| fitted kV x, Al mm, CsI mm, scatter x |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        fit = row["fitted_instrument"]
        fitted = f"{fit['kv_scale']}, {fit['al_filter_mm']}, {fit['scintillator_mm']}, {fit['scatter_fraction_scale']}"
        lines.append(
            f"| {row['condition']} | {row['n_images']} | {row['nominal_told']:.3f} | {row['tolerance_told']:.3f} | "
            f"{row['instrument_told']:.3f} | {row['seconds_wall']} | {row['seconds_cpu']} | {fitted} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command line entry point: run, print and write JSON + markdown to benchmarks/results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 images, three conditions")
    args = parser.parse_args()
    results = run(quick=args.quick)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (RESULTS_DIR / f"bench_physics_ceiling{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = to_markdown(results)
    (RESULTS_DIR / f"bench_physics_ceiling{suffix}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
