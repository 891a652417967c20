"""Benchmark of outlier exposure for near-OOD designations: can other aluminium designations, simulated, teach
an unknown score that flags designations it never saw?

The physics-limit estimator's per-alloy fits (``bench_ood.physics_features``: each alloy's log-likelihood relative
to the best, the best one, its thickness) of fresh known-alloy images (the five alloys) and of ``EXPOSURE``
designations (catalogued aluminium alloys, none of ``NEAR_MATERIALS``) train a gradient-boosted classifier, known
against exposure, balanced. It then scores the known images of the evaluation set's detector unit against the
held-out near-OOD set (``NEAR_MATERIALS``: 2024, 3003, 5754, 6061, 7020), all under the instrument the estimator
fits from the known batch. AUROC per held-out designation, mean +- sd over ``--seeds`` (each seed draws the
training images and exposure specimens afresh; the test images stay). Nothing here is shipped: it measures
whether the route is worth building (see docs/results.md, "Unknown materials").

Run: ``python benchmarks/bench_outlier_exposure.py [--project .] [--seeds 3] [--per-designation 120]`` ->
benchmarks/results/bench_outlier_exposure{tag}.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from bench_ood import physics_features
from kedro.config import OmegaConfigLoader
from machine import machine_name
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from alloy_mtl.evaluation.evaluation_set import evaluation_set_config
from alloy_mtl.evaluation.ood import simulate_ood_set
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.materials import material_from_params
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
logger = logging.getLogger("bench_outlier_exposure")

#: Catalogued wrought aluminium alloys (Aluminum Association registration limits, wt %; impurities as ranges
#: from 0) used as exposure: none of the five alloys and none of the held-out near-OOD designations.
EXPOSURE: dict[str, dict[str, Any]] = {
    "1100": {"density_g_cm3": 2.71, "limits_wt_pct": {"Si": [0, 0.5], "Fe": [0, 0.45], "Cu": [0.05, 0.2], "Zn": [0, 0.1]}},
    "2014": {"density_g_cm3": 2.80, "limits_wt_pct": {"Si": [0.5, 1.2], "Fe": [0, 0.7], "Cu": [3.9, 5.0], "Mn": [0.4, 1.2], "Mg": [0.2, 0.8], "Zn": [0, 0.25]}},
    "3004": {"density_g_cm3": 2.72, "limits_wt_pct": {"Si": [0, 0.3], "Fe": [0, 0.7], "Cu": [0, 0.25], "Mn": [1.0, 1.5], "Mg": [0.8, 1.3], "Zn": [0, 0.25]}},
    "4032": {"density_g_cm3": 2.68, "limits_wt_pct": {"Si": [11.0, 13.5], "Fe": [0, 1.0], "Cu": [0.5, 1.3], "Mg": [0.8, 1.3], "Ni": [0.5, 1.3]}},
    "5052": {"density_g_cm3": 2.68, "limits_wt_pct": {"Si": [0, 0.25], "Fe": [0, 0.4], "Cu": [0, 0.1], "Mg": [2.2, 2.8], "Cr": [0.15, 0.35], "Zn": [0, 0.1]}},
    "5086": {"density_g_cm3": 2.66, "limits_wt_pct": {"Si": [0, 0.4], "Fe": [0, 0.5], "Mn": [0.2, 0.7], "Mg": [3.5, 4.5], "Cr": [0.05, 0.25], "Zn": [0, 0.25]}},
    "6063": {"density_g_cm3": 2.69, "limits_wt_pct": {"Si": [0.2, 0.6], "Fe": [0, 0.35], "Cu": [0, 0.1], "Mg": [0.45, 0.9], "Zn": [0, 0.1]}},
    "6005": {"density_g_cm3": 2.70, "limits_wt_pct": {"Si": [0.6, 0.9], "Fe": [0, 0.35], "Cu": [0, 0.1], "Mn": [0, 0.1], "Mg": [0.4, 0.6], "Zn": [0, 0.1]}},
    "7050": {"density_g_cm3": 2.83, "limits_wt_pct": {"Si": [0, 0.12], "Fe": [0, 0.15], "Cu": [2.0, 2.6], "Mg": [1.9, 2.6], "Zn": [5.7, 6.7], "Zr": [0.08, 0.15]}},
    "7005": {"density_g_cm3": 2.78, "limits_wt_pct": {"Zn": [4.0, 5.0], "Mg": [1.0, 1.8], "Mn": [0.2, 0.7], "Cr": [0.06, 0.2], "Zr": [0.08, 0.2]}},
}  # fmt: skip


def _auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(unknown))], np.r_[known, unknown]))


def run(project: Path, seeds: int, per_designation: int, n_known: int) -> dict[str, Any]:
    """AUROC per held-out designation for each seed (see the module docstring)."""
    generation = OmegaConfigLoader(
        str(project / "conf"), base_env="base", default_run_env="local", merge_strategy={"parameters": "soft"}
    )["parameters"]["generation"]
    base = SimulationConfig.from_params(generation)
    config = evaluation_set_config(generation, EvaluationSetParams(n_images=n_known))
    known_test, _ = simulate_dataset(config)
    near, near_meta = simulate_ood_set(config, 60)
    rows = (near_meta["family"] == "near").to_numpy()
    near, near_meta = near[rows], near_meta[rows].reset_index(drop=True)
    estimator = PhysicsLimitEstimator(base, tolerances={k: (lo, hi) for k, lo, hi in base.tolerances} or None)
    estimator.fit_instrument(known_test)
    test_known, test_near = physics_features(estimator, known_test), physics_features(estimator, near)
    exposure = [material_from_params(name, spec) for name, spec in EXPOSURE.items()]
    designations = sorted(near_meta["material"].unique())
    per_seed = []
    for seed in range(seeds):
        known_train, _ = simulate_dataset(dataclasses.replace(config, seed=config.seed + 101 + seed))
        exposed, _ = simulate_dataset(
            dataclasses.replace(config, seed=config.seed + 201 + seed),
            materials=[(spec, per_designation) for spec in exposure],
        )
        x = np.vstack([physics_features(estimator, known_train), physics_features(estimator, exposed)])
        y = np.r_[np.zeros(len(known_train)), np.ones(len(exposed))]
        weight = np.where(y == 0, 1.0 / len(known_train), 1.0 / len(exposed))
        model = HistGradientBoostingClassifier(max_iter=300, random_state=seed).fit(
            x, y, sample_weight=weight
        )
        known_score, near_score = model.predict_proba(test_known)[:, 1], model.predict_proba(test_near)[:, 1]
        result = {"near": _auroc(known_score, near_score)}
        for name in designations:
            result[name] = _auroc(known_score, near_score[(near_meta["material"] == name).to_numpy()])
        logger.info("seed %d: %s", seed, {k: round(v, 3) for k, v in result.items()})
        per_seed.append(result)
    return {
        "n_known": len(known_test),
        "n_near": len(near),
        "exposure": list(EXPOSURE),
        "per_designation": per_designation,
        "per_seed": per_seed,
    }


def _markdown(results: dict[str, Any], command: str) -> str:
    keys = list(results["per_seed"][0])
    cells = []
    for key in keys:
        values = np.array([r[key] for r in results["per_seed"]])
        cells.append(f"{values.mean():.3f} +- {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}")
    return "\n".join(
        [
            "# Outlier exposure for near-OOD designations (physics fits)",
            "",
            f"`{command}` on {machine_name()}. Exposure: {', '.join(results['exposure'])} "
            f"({results['per_designation']} images each per seed). Test: {results['n_known']} known images of the "
            f"evaluation set's detector unit against {results['n_near']} images of the held-out designations. "
            f"AUROC, mean +- sd over {len(results['per_seed'])} seeds.",
            "",
            "| " + " | ".join(keys) + " |",
            "|" + "---|" * len(keys),
            "| " + " | ".join(cells) + " |",
            "",
        ]
    )


def main() -> None:
    """Measure and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-designation", type=int, default=120)
    parser.add_argument("--n-known", type=int, default=1500)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    results = run(args.project, args.seeds, args.per_designation, args.n_known)
    command = (
        f"python benchmarks/bench_outlier_exposure.py --seeds {args.seeds} --per-designation "
        f"{args.per_designation} --n-known {args.n_known}"
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"bench_outlier_exposure{args.tag}.json").write_text(json.dumps(results, indent=2))
    (RESULTS_DIR / f"bench_outlier_exposure{args.tag}.md").write_text(_markdown(results, command))


if __name__ == "__main__":
    main()
