"""Benchmark of what the promotion gate's paired comparison adds to a run that has a champion.

With the defaults of ``conf/base``: regenerating the robustness suite's gated conditions (unseen detector units and
in-tolerance settings, 1,000 images each), the paired specimen bootstrap (``registry.n_resamples``, 1,000) of two
models' predictions of them, and one model's prediction of those images per architecture (untrained weights: the
cost does not depend on them; the gate predicts with two models, the challenger and the champion). The first
``train_all`` has no champion and pays none of it.

Run: ``python benchmarks/bench_gate.py [--archs fnn,resnet18,efficientnet_b0]`` -> benchmarks/results/bench_gate.json
and .md (a few minutes on 2 cores; vgg16 and resnet50 take longest).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from machine import machine_name

from alloy_mtl.config import parse_params
from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation import robustness
from alloy_mtl.evaluation.paired_comparison import paired_comparison
from alloy_mtl.evaluation.params import EvaluationParams
from alloy_mtl.mtl.models.multitask import build_model
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.tracking.promotion import GateSettings

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
BATCH = 256
TASKS = {  # the default three heads; their size hardly matters beside the backbone
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "cross_entropy"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
    "absorption": {"kind": "regression", "target": "absorption", "loss": "mse"},
}


def _synthetic_predictions(metadata: pd.DataFrame, quality: float, seed: int) -> pd.DataFrame:
    """Predictions of the condition's images whose true alloy stands out by ``quality`` (the bootstrap's cost
    depends on the image count, not on the scores)."""
    rng = np.random.default_rng(seed)
    truth = np.array([ALLOYS.index(a) for a in metadata["alloy"].astype(str)])
    logits = rng.normal(size=(len(truth), len(ALLOYS)))
    logits[np.arange(len(truth)), truth] += quality
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = metadata[["image_id", "specimen_id"]].assign(alloy_true=metadata["alloy"].astype(str))
    for k, alloy in enumerate(ALLOYS):
        frame[f"prob_{alloy}"] = probs[:, k]
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archs", default="fnn,resnet18,efficientnet_b0")
    args = parser.parse_args()
    torch.manual_seed(0)
    params = yaml.safe_load((ROOT / "conf/base/parameters_data_processing.yml").read_text())
    generation = params["generation"]
    suite = parse_params(EvaluationParams, {}, "evaluation").robustness
    start = time.perf_counter()
    conditions = robustness.simulate_conditions(generation, suite)
    kinds = robustness.condition_kinds(generation, suite)
    gated = {name: pair for name, pair in conditions.items() if kinds[name] in robustness.SUMMARISED_KINDS}
    simulate_s = time.perf_counter() - start
    n_images = sum(len(metadata) for _, metadata in gated.values())

    settings = GateSettings()
    first = {name: _synthetic_predictions(meta, 2.0, i) for i, (name, (_, meta)) in enumerate(gated.items())}
    second = {
        name: _synthetic_predictions(meta, 1.8, 100 + i) for i, (name, (_, meta)) in enumerate(gated.items())
    }
    start = time.perf_counter()
    paired_comparison(
        first, second, n_resamples=settings.n_resamples, seed=settings.seed, level=settings.level
    )
    bootstrap_s = time.perf_counter() - start

    images, _ = next(iter(gated.values()))
    in_chans, size = images.shape[1], images.shape[-1]
    tasks = parse_tasks(TASKS)
    predict_s = {}
    for arch in args.archs.split(","):
        model = build_model(arch, in_chans, size, tasks).eval()
        start = time.perf_counter()
        with torch.no_grad():
            for _, (condition_images, _) in gated.items():
                for i in range(0, len(condition_images), BATCH):
                    model.predict(torch.from_numpy(np.ascontiguousarray(condition_images[i : i + BATCH])))
        predict_s[arch] = time.perf_counter() - start

    result = {
        "machine": machine_name(),
        "torch_threads": torch.get_num_threads(),
        "gated_conditions": list(gated),
        "n_images": n_images,
        "image_shape": [int(in_chans), int(size), int(size)],
        "simulate_s": simulate_s,
        "n_resamples": settings.n_resamples,
        "bootstrap_s": bootstrap_s,
        "predict_one_model_s": predict_s,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_gate.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# The promotion gate's paired comparison: what a run with a champion adds",
        "",
        f"Machine: {result['machine']}, {result['torch_threads']} torch threads. {len(gated)} gated conditions, "
        f"{n_images} images of {in_chans} x {size} x {size}. Command: `python benchmarks/bench_gate.py "
        f"--archs {args.archs}`.",
        "",
        "| part | seconds |",
        "|---|---|",
        f"| regenerate the gated conditions | {simulate_s:.1f} |",
        f"| paired bootstrap, {settings.n_resamples} resamples | {bootstrap_s:.1f} |",
        *[
            f"| one {arch} model predicts them (the gate runs two) | {s:.1f} |"
            for arch, s in predict_s.items()
        ],
        "",
    ]
    (RESULTS_DIR / "bench_gate.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
