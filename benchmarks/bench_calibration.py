"""Benchmark of temperature scaling on the models of a finished ``kedro run --pipeline train_all``.

For every trained architecture found under ``<project>/data``: the temperature the default fits
(``training.calibration: temperature``: the NLL-minimising ``T`` on the model's validation-split predictions,
``alloy_mtl.mtl.training.calibration.fit_temperature``), then top-label ECE, accuracy and mean confidence on
the evaluation set (fresh specimens, a detector unit training never saw) and on each robustness-suite
condition, before (``T = 1``) and after. Models trained without calibration (before it existed, or with
``training.calibration: none``): their saved probabilities are the "before"; the "after" is
``softmax(log p / T)``, what the model would answer at temperature ``T`` (softmax ignores the per-row
constant that separates ``log p`` from the logits). Models that carry their temperature (the default since it
existed; ``training_summary.json``): their saved probabilities are the "after" and ``softmax(T log p)`` the
"before", at the temperature the training fitted.

Run: ``python benchmarks/bench_calibration.py [--project .] [--tag _x]`` ->
benchmarks/results/bench_calibration{tag}.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import machine_name

from alloy_mtl.datasets import TorchBundleDataset, XrayStoreDataset
from alloy_mtl.evaluation.classification import expected_calibration_error, prob_columns, probs_at_temperature
from alloy_mtl.mtl.labelled_prediction import predict_images
from alloy_mtl.mtl.training.calibration import fit_temperature

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
ARCHS = ("fnn", "resnet18", "resnet34", "resnet50", "vgg16", "efficientnet_b0")


def _scores(frame: pd.DataFrame, temperature: float) -> dict[str, float]:
    probs, y = probs_at_temperature(frame, 1.0 / temperature)  # the saved probabilities are at T = 1
    return {
        "ece": expected_calibration_error(probs, y),
        "accuracy": float((probs.argmax(axis=1) == y).mean()),
        "confidence": float(probs.max(axis=1).mean()),
    }


def _carried_temperature(summary_file: Path) -> float | None:
    """The temperature a model carries (its training summary's), None for a model trained without one."""
    if not summary_file.is_file():
        return None
    calibration = json.loads(summary_file.read_text()).get("calibration") or {}
    value = (calibration.get("alloy") or {}).get("temperature")
    return None if value is None else float(value)


def measure(project: Path, arch: str) -> dict[str, Any] | None:
    """Temperature and before/after scores of one architecture (None when it was not trained)."""
    data = project / "data"
    bundle_path = data / "06_models" / arch / "model.pt"
    if not bundle_path.is_file():
        return None
    bundle = TorchBundleDataset(filepath=str(bundle_path)).load()
    model_input = XrayStoreDataset(path=str(data / "05_model_input" / "xray"), dtype="float16").load()
    val = (model_input.metadata["split"] == "val").to_numpy()
    val_frame = predict_images(
        bundle, np.asarray(model_input.images[val]), model_input.metadata[val].reset_index(drop=True)
    )
    val_probs, labels = probs_at_temperature(val_frame, 1.0)
    carried = _carried_temperature(data / "07_model_output" / arch / "training_summary.json")
    if carried is None:
        temperature = fit_temperature(np.log(np.clip(val_probs, 1e-300, None)), labels)
        before, after = 1.0, temperature
    else:
        temperature, before, after = carried, 1.0 / carried, 1.0
    out: dict[str, Any] = {"arch": arch, "temperature": temperature, "n_val": len(labels), "carried": carried}
    evaluation = pd.read_csv(data / "07_model_output" / arch / "evaluation_set_predictions.csv", dtype=str)
    evaluation[prob_columns()] = evaluation[prob_columns()].astype(float)
    out["evaluation_set"] = {"before": _scores(evaluation, before), "after": _scores(evaluation, after)}
    suite_file = data / "07_model_output" / arch / "robustness_predictions.csv"
    if suite_file.is_file():
        suite = pd.read_csv(suite_file, dtype=str)
        suite[prob_columns()] = suite[prob_columns()].astype(float)
        out["suite"] = {
            condition: {"before": _scores(rows, before), "after": _scores(rows, after)}
            for condition, rows in suite.groupby("condition", sort=False)
        }
    return out


def _markdown(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Temperature scaling on a train_all run's models",
        "",
        f"`{command}` on {machine_name()}. Top-label ECE (15 bins), accuracy and mean confidence, before "
        "(T = 1) -> after (T fitted on the validation split). Suite: worst ECE over its conditions.",
        "",
        "| arch | T | val images | evaluation set ECE | accuracy | mean confidence | suite worst ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        before, after = r["evaluation_set"]["before"], r["evaluation_set"]["after"]
        suite = r.get("suite", {})
        worst = (
            f"{max(c['before']['ece'] for c in suite.values()):.3f} -> "
            f"{max(c['after']['ece'] for c in suite.values()):.3f}"
            if suite
            else "-"
        )
        lines.append(
            f"| {r['arch']} | {r['temperature']:.3f} | {r['n_val']} | {before['ece']:.3f} -> {after['ece']:.3f} | "
            f"{after['accuracy']:.3f} | {before['confidence']:.3f} -> {after['confidence']:.3f} | {worst} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every trained architecture and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    results = [r for arch in ARCHS if (r := measure(args.project, arch)) is not None]
    if not results:
        raise SystemExit(
            f"no trained models under {args.project / 'data' / '06_models'}; run train_all first"
        )
    command = "python benchmarks/bench_calibration.py" + (f" --tag {args.tag}" if args.tag else "")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"bench_calibration{args.tag}.json").write_text(json.dumps(results, indent=2))
    (RESULTS_DIR / f"bench_calibration{args.tag}.md").write_text(_markdown(results, command))


if __name__ == "__main__":
    main()
