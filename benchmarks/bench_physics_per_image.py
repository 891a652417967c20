"""Benchmark: can the physics unknown score be applied one image at a time (as a served model, one image per
request, would), at the instrument the model records, instead of fitting the instrument per batch?

Per seed the score is fitted as ``kedro run --pipeline unknown_materials`` fits it. Per image, its features are
taken under the declared (recorded) instrument with no fit, and its reference quantiles are recomputed the same
way on the fitting's reference images (the conformal set's validation units, none of the evaluation's). Measured on
the evaluation set's detector unit: the known images rejected at a 1 % setting, per image and batch by batch
(the shipped way), at the nominal instrument and at instruments inside the declared tolerances (a lab's instrument
is never the nominal one); and, at the nominal instrument, the AUROC of both against the evaluation's and
``bench_outlier_exposure``'s held-out designations.

Run: ``python benchmarks/bench_physics_per_image.py [--seeds 2] [--n-known 600]`` ->
benchmarks/results/bench_physics_per_image.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from bench_outlier_exposure import REJECT_RATE, _auroc, _mean_sd, near_designations, project_params
from machine import machine_name

from alloy_mtl.evaluation.evaluation_set import evaluation_set_config
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.evaluation.physics_unknown import (
    PhysicsUnknownScore,
    _with_references,
    fit_physics_unknown,
    fitting_sets,
    imaged,
    physics_features,
)
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument_fit import instrument_config, nominal_instrument
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
#: Instruments inside the declared tolerances (conf/base/parameters_data_processing.yml), one setting moved.
SHIFTS: dict[str, dict[str, float]] = {
    "nominal": {},
    "kV x1.01": {"kv_scale": 1.01},
    "kV x1.02": {"kv_scale": 1.02},
    "filter 1.15 mm": {"al_filter_mm": 1.15},
    "filter 1.3 mm": {"al_filter_mm": 1.3},
    "scatter x1.5": {"scatter_fraction_scale": 1.5},
    "scintillator 0.25 mm": {"scintillator_mm": 0.25},
}
logger = logging.getLogger("bench_physics_per_image")


def _per_image(score: PhysicsUnknownScore, estimator: PhysicsLimitEstimator, reference: np.ndarray):
    """The score with references of per-image features at the estimator's (declared) instrument, and its
    threshold for ``REJECT_RATE``."""
    features = physics_features(estimator, reference)
    single = _with_references(score, *score.components(features))
    return single, float(np.quantile(single.combined(*single.components(features)), 1.0 - REJECT_RATE))


def run(project: Path, seeds: int, n_known: int) -> dict[str, Any]:
    """Per seed: known rejected per shift (per image, per batch), AUROC per designation at the nominal one."""
    generation, unknown_params = project_params(project)
    declared = SimulationConfig.from_params(generation)
    config = evaluation_set_config(generation, EvaluationSetParams(n_images=n_known))
    unknown, meta = near_designations(config, 30)
    materials = meta["material"].astype(str).to_numpy()
    known = {
        name: simulate_dataset(
            dataclasses.replace(
                instrument_config(config, {**nominal_instrument(config), **shift}), seed=config.seed + 7
            )
        )[0]
        for name, shift in SHIFTS.items()
    }
    estimator = PhysicsLimitEstimator.within_declared(declared)  # the declared instrument, never refitted
    per_seed = []
    for seed in range(seeds):
        seeded = {**generation, "seed": int(generation["seed"]) + 1000 * seed}
        fitted = fit_physics_unknown(seeded, unknown_params)
        reference, _ = imaged(fitting_sets(seeded, unknown_params).reference)
        single, single_threshold = _per_image(fitted, estimator, reference)
        batch_threshold = fitted.threshold(REJECT_RATE)
        result: dict[str, Any] = {"rejected_per_image": {}, "rejected_per_batch": {}}
        for name, images in known.items():
            per_image = single.combined(*single.components(physics_features(estimator, images)))
            result["rejected_per_image"][name] = float((per_image > single_threshold).mean())
            per_batch = fitted.score(declared, images)
            result["rejected_per_batch"][name] = float((per_batch > batch_threshold).mean())
            logger.info(
                "seed %d %s: known rejected per image %.3f, per batch %.3f",
                seed,
                name,
                result["rejected_per_image"][name],
                result["rejected_per_batch"][name],
            )
        stream = np.concatenate([known["nominal"], unknown])
        order = np.random.default_rng(0).permutation(len(stream))
        batch_scores = np.empty(len(stream))
        batch_scores[order] = fitted.score(declared, stream[order])
        image_scores = single.combined(*single.components(physics_features(estimator, stream)))
        n = len(known["nominal"])
        result["auroc"] = {
            name: {
                "per_image": _auroc(image_scores[:n], image_scores[n:][materials == name]),
                "per_batch": _auroc(batch_scores[:n], batch_scores[n:][materials == name]),
            }
            for name in sorted(set(materials))
        }
        per_seed.append(result)
    return {"n_known": n_known, "shifts": SHIFTS, "per_seed": per_seed}


def _markdown(results: dict[str, Any], command: str) -> str:
    runs = results["per_seed"]
    lines = [
        "# The physics unknown score one image at a time, at the recorded instrument",
        "",
        f"`{command}` on {machine_name()}; the evaluation set's detector unit, {results['n_known']} known images "
        f"per instrument, mean +- sd over {len(runs)} seed(s) (each fits the score on fresh images). Threshold: "
        f"{REJECT_RATE:.0%} of the fitting's reference images rejected, scored the same way.",
        "",
        "| instrument (inside the declared tolerances) | known rejected, per image | known rejected, per batch "
        "(shipped) |",
        "|---|---|---|",
    ]
    for name in results["shifts"]:
        lines.append(
            f"| {name} | {_mean_sd([r['rejected_per_image'][name] for r in runs])} | "
            f"{_mean_sd([r['rejected_per_batch'][name] for r in runs])} |"
        )
    lines += ["", "| designation (nominal instrument) | AUROC per image | AUROC per batch |", "|---|---|---|"]
    for name in runs[0]["auroc"]:
        lines.append(
            f"| {name} | {_mean_sd([r['auroc'][name]['per_image'] for r in runs])} | "
            f"{_mean_sd([r['auroc'][name]['per_batch'] for r in runs])} |"
        )
    return "\n".join([*lines, ""])


def main() -> None:
    """Measure and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--n-known", type=int, default=600)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    results = run(args.project, args.seeds, args.n_known)
    command = f"python benchmarks/bench_physics_per_image.py --seeds {args.seeds} --n-known {args.n_known}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_physics_per_image.json").write_text(json.dumps(results, indent=2))
    (RESULTS_DIR / "bench_physics_per_image.md").write_text(_markdown(results, command))


if __name__ == "__main__":
    main()
