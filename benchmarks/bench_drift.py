"""Benchmark of the inference pipeline's drift alarm: false alarms on the model's own instrument, detections of drift.

The setting of ``kedro run --pipeline inference`` with the defaults of ``conf/base``: the beam is tested against
the instrument the models record (the nominal ``generation`` settings), the detector against the generated
evaluation set (3,000 images of the evaluation detector unit), each batch of 200 images prepared as the models
take them (neighbour-median bad-pixel correction). Batches:

* ``same instrument``: ``--batches`` batches of fresh, shuffled specimens of all five alloys, imaged by the
  reference's detector unit at the nominal beam (the false-alarm rate; target <= 1 %);
* ``one alloy``: 20 batches of a single alloy each (4 per alloy), same instrument: an alloy mix is not drift;
* ``another detector unit``: 10 batches, each from a detector unit of its own, nominal beam;
* ``kV x1.02`` and ``Al filter +0.3 mm``: 10 batches each, the reference's detector unit.

Per family: the share of batches that raised the alarm (either test, and each test alone) at the default
``inference.drift.alpha`` (0.001), with its exact 95 % interval (Clopper-Pearson); the beam test's alarms at
alpha 0.01 beside; the largest beam statistic; the seconds one batch's check takes. Every batch's statistics are
in the JSON.

Run: ``python benchmarks/bench_drift.py [--batches 100]`` -> benchmarks/results/bench_drift.json and .md
(about 20 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from machine import machine_name
from scipy.stats import binomtest, chi2

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.detector_pattern import fit_pattern_reference
from alloy_mtl.evaluation.drift import DriftParams, check_batches
from alloy_mtl.evaluation.evaluation_set import evaluation_set_config, simulate_evaluation_set
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.mtl.loading.preprocess import prepare_images
from alloy_mtl.physics.calibrated_generation import nominal_generation, recorded_config, simulated_instrument
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
BATCH = 200
BAD_PIXELS = "neighbour_median"
LOOSE_THRESHOLD = float(chi2.ppf(0.99, 4))


def _generation() -> dict:
    params = yaml.safe_load((ROOT / "conf/base/parameters_data_processing.yml").read_text())
    return nominal_generation(params["generation"])


def _prepared(images: np.ndarray, size: int) -> np.ndarray:
    return prepare_images(torch.from_numpy(np.ascontiguousarray(images)), size, BAD_PIXELS).numpy()


def _batches(
    config: SimulationConfig, n_batches: int, rng: np.random.Generator, shuffle: bool = True
) -> list:
    """``n_batches`` batches of ``BATCH`` images of ``config`` (shuffled across specimens unless told not to)."""
    config = dataclasses.replace(config, n_images=BATCH * n_batches, min_images_per_class=3)
    images, _ = simulate_dataset(config)
    order = rng.permutation(len(images)) if shuffle else np.arange(len(images))
    return [images[order[i * BATCH : (i + 1) * BATCH]] for i in range(n_batches)]


def _families(generation: dict, n_null: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    base = evaluation_set_config(generation, EvaluationSetParams())
    families = {
        "same instrument": _batches(dataclasses.replace(base, seed=base.seed + 1), n_null, rng),
        "one alloy": [
            _batches(
                dataclasses.replace(base, seed=base.seed + 2 + k, class_order=(alloy,), imbalance_ratio=1.0),
                1,
                rng,
            )[0]
            for k, alloy in enumerate(a for a in ALLOYS for _ in range(4))
        ],
        "another detector unit": [
            _batches(dataclasses.replace(base, seed=base.seed + 20 + k, detector_seed=90_000 + k), 1, rng)[0]
            for k in range(10)
        ],
        "kV x1.02": _batches(
            dataclasses.replace(base, seed=base.seed + 40, kv=tuple(1.02 * kv for kv in base.kv)), 10, rng
        ),
        "Al filter +0.3 mm": _batches(
            dataclasses.replace(base, seed=base.seed + 60, al_filter_mm=base.al_filter_mm + 0.3), 10, rng
        ),
    }
    return families


def _rate(hits: int, n: int) -> dict[str, float]:
    low, high = binomtest(hits, n).proportion_ci(0.95, method="exact")
    return {"alarms": hits, "batches": n, "rate": hits / n, "low": float(low), "high": float(high)}


def run(n_null: int) -> dict:
    generation = _generation()
    size = int(generation.get("image_size", SimulationConfig().image_size))
    instrument = recorded_config(generation, simulated_instrument(generation), size)
    reference_images, _ = simulate_evaluation_set(generation, EvaluationSetParams())
    reference = fit_pattern_reference(_prepared(reference_images, size))
    params = DriftParams(batch_size=BATCH)
    rng = np.random.default_rng(0)
    rows = []
    for family, batches in _families(generation, n_null, rng).items():
        start = time.perf_counter()
        checked = [
            check_batches(_prepared(b, size), [f"{family}-{i}"] * len(b), instrument, reference, params)[0]
            for i, b in enumerate(batches)
        ]
        seconds = (time.perf_counter() - start) / len(batches)
        statistics = [c.beam.statistic for c in checked]
        rows.append(
            {
                "family": family,
                "either": _rate(sum(c.alarm for c in checked), len(checked)),
                "beam": _rate(sum(c.beam.alarm for c in checked), len(checked)),
                "beam_alpha_0.01": _rate(sum(x > LOOSE_THRESHOLD for x in statistics), len(checked)),
                "detector": _rate(sum(c.detector.alarm for c in checked), len(checked)),
                "max_beam_statistic": float(np.max(statistics)),
                "median_beam_statistic": float(np.median(statistics)),
                "median_pattern_similarity": float(np.median([c.detector.similarity for c in checked])),
                "seconds_per_batch": seconds,
                "batches": [
                    {
                        "beam_statistic": c.beam.statistic,
                        "fitted": c.beam.fitted,
                        "pattern_similarity": c.detector.similarity,
                        "pattern_expected": c.detector.expected,
                    }
                    for c in checked
                ],
            }
        )
        print(family, {k: v for k, v in rows[-1].items() if k != "batches"}, flush=True)  # noqa: T201 (progress)
    return {
        "machine": machine_name(),
        "batch": BATCH,
        "alpha": params.alpha,
        "beam_threshold": checked[0].beam.threshold,
        "families": rows,
    }


def _cell(rate: dict) -> str:
    return f"{rate['alarms']}/{rate['batches']} ({100 * rate['low']:.0f}-{100 * rate['high']:.0f} %)"


def markdown(result: dict) -> str:
    lines = [
        "# Drift alarm: false alarms and detections",
        "",
        f"Machine: {result['machine']}. `python benchmarks/bench_drift.py`. Batches of {result['batch']} images; "
        f"beam alarm above {result['beam_threshold']:.1f} (chi-square, 4 settings, alpha {result['alpha']}; "
        f"alpha 0.01: {LOOSE_THRESHOLD:.1f}); detector alarm below half the expected similarity. Cells: batches "
        "that raised the alarm (exact 95 % interval).",
        "",
        "| batches | alarm (either test) | beam test | beam test at alpha 0.01 | detector test | beam statistic "
        "median / max | median pattern similarity | s per batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["families"]:
        lines.append(
            f"| {row['family']} | {_cell(row['either'])} | {_cell(row['beam'])} | {_cell(row['beam_alpha_0.01'])} | "
            f"{_cell(row['detector'])} | {row['median_beam_statistic']:.1f} / {row['max_beam_statistic']:.1f} | "
            f"{row['median_pattern_similarity']:.3f} | {row['seconds_per_batch']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batches", type=int, default=100, help="batches from the model's own instrument")
    args = parser.parse_args()
    result = run(args.batches)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_drift.json").write_text(json.dumps(result, indent=2))
    (RESULTS_DIR / "bench_drift.md").write_text(markdown(result))
    print(markdown(result))  # noqa: T201 (benchmark output)


if __name__ == "__main__":
    pd.set_option("display.width", 160)
    main()
