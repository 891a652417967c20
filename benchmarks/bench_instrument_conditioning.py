"""Benchmark: does the exposure classifier of the physics unknown score get sharper next to the known alloys when it
is told the batch's fitted instrument, and with more, smaller instrument sessions?

The score fitted across the declared tolerances (``unknown_materials.instrument_sessions``) keeps its rejection rate
at every instrument inside them, but its classifier is less sharp next to a known alloy than one fitted at a single
instrument: it learns how the fits spread over all instruments. Told the instrument each batch was fitted at (the
six tolerance keys, scaled to their declared ranges), it could learn how the fits *move* with it instead. Compared
here, per seed, on the same images and fits: classifiers taught in ``--sessions`` sessions (default 8 and 32), each
with the physics fits only (A, the shipped features) and with the fitted instrument beside them (B).

Both take the shipped fitting sets (:func:`~alloy_mtl.evaluation.physics_unknown.fitting_sets`), the instrument
fitted per session (trimmed, as a batch's at inference), and are scored by their log-odds alone (no fit density,
two fits per batch, no third): the comparison is of the classifier, not of the shipped score. Threshold: 1 % of the
fitting's reference images (scored batch by batch). Measured on the evaluation set's detector unit: known images
withheld in ``bench_outlier_exposure``'s shuffled stream (1,500 known images, 30 of each near-OOD and held-out
designation) and in streams of 400 known images at instruments moved inside the tolerances; AUROC per designation
against all five alloys and against its nearest.

Run: ``python benchmarks/bench_instrument_conditioning.py [--seeds 1] [--seed-offset 0]`` ->
benchmarks/results/bench_instrument_conditioning.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from bench_outlier_exposure import (
    REJECT_RATE,
    _auroc,
    _mean_sd,
    near_designations,
    nearest_alloys,
    project_params,
)
from machine import machine_name
from sklearn.ensemble import HistGradientBoostingClassifier

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.evaluation_set import evaluation_set_config
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.evaluation.physics_unknown import (
    UnknownMaterialsParams,
    _fit_trimmed,
    batch_slices,
    fitting_sets,
    imaged,
    physics_features,
)
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.instrument_fit import instrument_config, nominal_instrument
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
N_FITS = len(ALLOYS) + 2
#: Instruments inside the declared tolerances (conf/base/parameters_data_processing.yml) the known streams are
#: imaged at, besides the nominal one of the mixed stream.
SHIFTS: dict[str, dict[str, float]] = {
    "filter 1.3 mm": {"al_filter_mm": 1.3},
    "kV x1.02": {"kv_scale": 1.02},
    "scintillator 0.25 mm": {"scintillator_mm": 0.25},
    "filter 0.8 mm, kV x0.98": {"al_filter_mm": 0.8, "kv_scale": 0.98},
}
CLASSIFIERS = {"A: fits": slice(0, N_FITS), "B: fits + fitted instrument": slice(None)}
logger = logging.getLogger("bench_instrument_conditioning")


class Featurizer:
    """Physics fits and the fitted instrument (each tolerance key scaled to its declared range) of images."""

    def __init__(self, declared: SimulationConfig, trim: float) -> None:
        self.declared, self.trim = declared, trim
        self.ranges = {key: (low, high) for key, low, high in declared.tolerances}

    def _fitted(self, images: np.ndarray) -> tuple[PhysicsLimitEstimator, np.ndarray]:
        estimator = PhysicsLimitEstimator.within_declared(self.declared)
        _fit_trimmed(estimator, images, self.trim)
        instrument = estimator.fitted_instrument or {}
        scaled = [(instrument[key] - low) / (high - low) for key, (low, high) in sorted(self.ranges.items())]
        return estimator, np.asarray(scaled)

    def batches(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        """Each batch (:func:`batch_slices`) under the instrument fitted on it."""
        out = np.empty((len(images), N_FITS + len(self.ranges)))
        for batch in batch_slices(len(images), batch_size):
            estimator, scaled = self._fitted(images[batch])
            out[batch, :N_FITS], out[batch, N_FITS:] = physics_features(estimator, images[batch]), scaled
        return out

    def sessions(
        self, known: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each session's known and other images under the instrument fitted on its known images."""
        out = [np.empty((len(images), N_FITS + len(self.ranges))) for images, _ in (known, other)]
        for session in np.unique(known[1]):
            estimator, scaled = self._fitted(known[0][known[1] == session])
            for (images, sessions), features in zip((known, other), out, strict=True):
                rows = sessions == session
                features[rows, :N_FITS], features[rows, N_FITS:] = (
                    physics_features(estimator, images[rows]),
                    scaled,
                )
        return out[0], out[1]


def _seed_result(
    generation: dict[str, Any],
    params: UnknownMaterialsParams,
    sessions: list[int],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    declared = SimulationConfig.from_params(generation)
    featurizer = Featurizer(declared, params.trim)
    reference_sets = fitting_sets(generation, params.model_copy(update={"instrument_sessions": 1})).reference
    reference_images, reference_sessions = imaged(reference_sets)
    reference = np.empty((len(reference_images), N_FITS + len(featurizer.ranges)))
    for session in range(len(reference_sets)):
        rows = reference_sessions == session
        reference[rows] = featurizer.batches(reference_images[rows], params.batch_size)
    result: dict[str, Any] = {}
    for count in sessions:
        taught = params.model_copy(update={"instrument_sessions": count})
        sets = fitting_sets(generation, taught)
        known, exposure = featurizer.sessions(
            imaged(sets.known),
            imaged(sets.exposure, [(spec, taught.images_per_designation) for spec in taught.materials()]),
        )
        x, y = np.vstack([known, exposure]), np.r_[np.zeros(len(known)), np.ones(len(exposure))]
        weights = np.where(y == 0, 1.0 / len(known), 1.0 / len(exposure))
        for name, columns in CLASSIFIERS.items():
            classifier = HistGradientBoostingClassifier(max_iter=params.max_iter, random_state=declared.seed)
            classifier.fit(x[:, columns], y, sample_weight=weights)
            threshold = np.quantile(classifier.decision_function(reference[:, columns]), 1.0 - REJECT_RATE)
            stream = classifier.decision_function(evaluation["stream"][:, columns])
            known_scores, unknown_scores = stream[: evaluation["n_known"]], stream[evaluation["n_known"] :]
            materials, nearest, alloy = (
                evaluation["materials"],
                evaluation["nearest"],
                evaluation["known_alloy"],
            )
            entry = {
                "withheld": {
                    "nominal (mixed stream)": float((known_scores > threshold).mean()),
                    **{
                        shift: float((classifier.decision_function(features[:, columns]) > threshold).mean())
                        for shift, features in evaluation["shifts"].items()
                    },
                },
                "auroc": {
                    m: _auroc(known_scores, unknown_scores[materials == m]) for m in sorted(set(materials))
                },
                "auroc_nearest": {
                    m: _auroc(known_scores[alloy == nearest[m]], unknown_scores[materials == m])
                    for m in sorted(set(materials))
                },
            }
            logger.info("%d sessions, %s: %s", count, name, entry["withheld"])
            result[f"{count} sessions, {name}"] = entry
    return result


def run(project: Path, seeds: int, seed_offset: int, sessions: list[int]) -> dict[str, Any]:
    """Per seed (each draws fresh fitting images), both classifiers per session count (see the module docstring)."""
    generation, params = project_params(project)
    declared = SimulationConfig.from_params(generation)
    featurizer = Featurizer(declared, params.trim)
    config = evaluation_set_config(generation, EvaluationSetParams(n_images=1500))
    known, known_meta = simulate_dataset(dataclasses.replace(config, seed=config.seed + 7))
    unknown, meta = near_designations(config, 30)
    materials = meta["material"].astype(str).to_numpy()
    stream = np.concatenate([known, unknown])
    order = np.random.default_rng(0).permutation(len(stream))
    stream_features = np.empty((len(stream), N_FITS + len(featurizer.ranges)))
    stream_features[order] = featurizer.batches(stream[order], params.batch_size)
    shifts = {
        name: featurizer.batches(
            simulate_dataset(
                dataclasses.replace(
                    instrument_config(config, {**nominal_instrument(config), **shift}),
                    seed=config.seed + 7,
                    n_images=400,
                )
            )[0],
            params.batch_size,
        )
        for name, shift in SHIFTS.items()
    }
    evaluation = {
        "stream": stream_features,
        "n_known": len(known),
        "materials": materials,
        "known_alloy": known_meta["alloy"].astype(str).to_numpy(),
        "nearest": nearest_alloys(stream_features[len(known) :, :N_FITS], materials),
        "shifts": shifts,
    }
    per_seed = []
    for seed in range(seed_offset, seed_offset + seeds):
        seeded = {**generation, "seed": int(generation["seed"]) + 1000 * seed}
        per_seed.append(_seed_result(seeded, params, sessions, evaluation))
    return {
        "seeds": list(range(seed_offset, seed_offset + seeds)),
        "sessions": sessions,
        "nearest": evaluation["nearest"],
        "keys": sorted(featurizer.ranges),
        "per_seed": per_seed,
    }


def _markdown(results: dict[str, Any], command: str) -> str:
    runs = results["per_seed"]
    variants = list(runs[0])
    lines = [
        "# The physics unknown score's classifier told the fitted instrument",
        "",
        f"`{command}` on {machine_name()}; seeds {results['seeds']} (each fits on fresh images), mean +- sd. "
        f"Classifier log-odds alone, two fits per batch; threshold: {REJECT_RATE:.0%} of the fitting's reference "
        f"images. Instrument keys (scaled to their declared ranges): {', '.join(results['keys'])}.",
        "",
        "Known images withheld (target: at most the stated 1 %):",
        "",
        f"| classifier | {' | '.join(runs[0][variants[0]]['withheld'])} |",
        f"|---|{'---|' * len(runs[0][variants[0]]['withheld'])}",
    ]
    for variant in variants:
        cells = [_mean_sd([r[variant]["withheld"][k] for r in runs]) for k in runs[0][variant]["withheld"]]
        lines.append(f"| {variant} | {' | '.join(cells)} |")
    lines += [
        "",
        "AUROC against all five alloys / against the nearest alloy (nominal instrument, mixed stream):",
        "",
        f"| designation (nearest) | {' | '.join(variants)} |",
        f"|---|{'---|' * len(variants)}",
    ]
    for name in runs[0][variants[0]]["auroc"]:
        cells = [
            f"{np.mean([r[v]['auroc'][name] for r in runs]):.3f} / "
            f"{np.mean([r[v]['auroc_nearest'][name] for r in runs]):.3f}"
            for v in variants
        ]
        lines.append(f"| {name} ({results['nearest'][name]}) | {' | '.join(cells)} |")
    return "\n".join([*lines, ""])


def main() -> None:
    """Measure and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--sessions", default="8,32", help="session counts, comma-separated")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alloy_mtl").setLevel(logging.WARNING)
    sessions = [int(count) for count in args.sessions.split(",")]
    results = run(args.project, args.seeds, args.seed_offset, sessions)
    command = "python benchmarks/bench_instrument_conditioning.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in (("seeds", args.seeds), ("seed_offset", args.seed_offset))
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_instrument_conditioning.json").write_text(json.dumps(results, indent=1))
    (RESULTS_DIR / "bench_instrument_conditioning.md").write_text(_markdown(results, command))


if __name__ == "__main__":
    main()
