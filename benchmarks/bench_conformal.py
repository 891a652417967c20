"""Benchmark of the conformal sets and intervals on the models of a finished ``kedro run --pipeline train_all``.

For every trained architecture under ``<project>/data``: the recipe's post-training fit done afresh on the run's
validation split (temperature, then ``ConformalSets.fit`` at ``--coverage``, class-conditional), then the
coverage per alloy, mean set size and interval coverage on the run's evaluation set (fresh specimens, a detector
unit training never saw) and on each robustness-suite condition. The run's models must predate the sets (their
saved probabilities are at T = 1; the sets are applied at the fitted T, as the model would answer).

Run: ``python benchmarks/bench_conformal.py [--project .] [--coverage 0.9] [--tag _x]`` ->
benchmarks/results/bench_conformal{tag}.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import machine_name

from alloy_mtl.constants import ALLOYS
from alloy_mtl.datasets import TorchBundleDataset, XrayStoreDataset
from alloy_mtl.evaluation.classification import prob_columns, probs_at_temperature
from alloy_mtl.evaluation.conformal import conformal_coverage
from alloy_mtl.mtl.models.conformal import ConformalSets
from alloy_mtl.mtl.recipe import predict_images
from alloy_mtl.mtl.training.calibration import fit_temperature

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
ARCHS = ("fnn", "efficientnet_b0", "resnet18", "resnet34", "resnet50", "vgg16")
TARGETS = {"thickness": "thickness_mm", "absorption": "absorption"}


def _at_temperature(frame: pd.DataFrame, temperature: float) -> pd.DataFrame:
    probs, _ = probs_at_temperature(frame, 1.0 / temperature)
    out = frame.copy()
    out[prob_columns()] = probs
    return out


def measure(project: Path, arch: str, coverage: float) -> dict[str, Any] | None:
    """Fitted sets and their coverage for one architecture (None when it was not trained)."""
    data = project / "data"
    bundle_path = data / "06_models" / arch / "model.pt"
    if not bundle_path.is_file():
        return None
    bundle = TorchBundleDataset(filepath=str(bundle_path)).load()
    model_input = XrayStoreDataset(path=str(data / "05_model_input" / "xray"), dtype="float16").load()
    val = (model_input.metadata["split"] == "val").to_numpy()
    frame = predict_images(
        bundle, np.asarray(model_input.images[val]), model_input.metadata[val].reset_index(drop=True)
    )
    probs, labels = probs_at_temperature(frame, 1.0)
    temperature = fit_temperature(np.log(np.clip(probs, 1e-300, None)), labels)
    calibrated, _ = probs_at_temperature(frame, 1.0 / temperature)
    residuals = {
        task: np.abs(frame[f"{stem}_true"].to_numpy(float) - frame[f"{stem}_pred"].to_numpy(float))
        for task, stem in TARGETS.items()
    }
    sets = ConformalSets(len(ALLOYS), list(TARGETS))
    fitted = sets.fit(calibrated, labels, residuals, coverage)
    out: dict[str, Any] = {"arch": arch, "temperature": temperature, "fitted": fitted}
    out["validation"] = conformal_coverage(_at_temperature(frame, temperature), fitted, list(ALLOYS), TARGETS)
    evaluation = pd.read_csv(
        data / "07_model_output" / arch / "evaluation_set_predictions.csv", dtype={"alloy_true": str}
    )
    out["evaluation_set"] = conformal_coverage(
        _at_temperature(evaluation, temperature), fitted, list(ALLOYS), TARGETS
    )
    suite_file = data / "07_model_output" / arch / "robustness_predictions.csv"
    if suite_file.is_file():
        suite = pd.read_csv(suite_file, dtype={"alloy_true": str})
        out["suite"] = {
            str(condition): conformal_coverage(
                _at_temperature(rows, temperature), fitted, list(ALLOYS), TARGETS
            )
            for condition, rows in suite.groupby("condition", sort=False)
        }
    return out


def _row(name: str, report: dict[str, Any]) -> str:
    per_class = " | ".join(f"{report['per_class'][a]['coverage']:.3f}" for a in ALLOYS)
    intervals = " | ".join(f"{report['intervals'][t]['coverage']:.3f}" for t in TARGETS)
    return (
        f"| {name} | {report['coverage']:.3f} | {report['mean_set_size']:.2f} | {per_class} | {intervals} |"
    )


def _markdown(results: list[dict[str, Any]], command: str, coverage: float) -> str:
    header = "| model | coverage | mean set size | " + " | ".join(ALLOYS) + " | thickness | absorption |"
    lines = [
        "# Conformal sets and intervals on a train_all run's models",
        "",
        f"`{command}` on {machine_name()}. Fitted on the validation split for {coverage:.0%} coverage of "
        "every alloy (class-conditional) and of each regression target; coverage measured on the evaluation set "
        "(a detector unit the models never saw) and, per model, its worst alloy over the robustness suite.",
        "",
        "## Evaluation set",
        "",
        header,
        "|---|---|---|" + "---|" * (len(ALLOYS) + 2),
        *[_row(r["arch"], r["evaluation_set"]) for r in results],
        "",
        "## Validation split (where the guarantee holds by construction)",
        "",
        header,
        "|---|---|---|" + "---|" * (len(ALLOYS) + 2),
        *[_row(r["arch"], r["validation"]) for r in results],
        "",
    ]
    suites = [r for r in results if r.get("suite")]
    if suites:
        lines += [
            "## Robustness suite: lowest per-alloy coverage over its conditions",
            "",
            "| model | " + " | ".join(next(iter(suites))["suite"]) + " |",
            "|---|" + "---|" * len(next(iter(suites))["suite"]),
        ]
        for r in suites:
            cells = [
                f"{min(c['coverage'] for c in report['per_class'].values()):.3f}"
                for report in r["suite"].values()
            ]
            lines.append(f"| {r['arch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every trained architecture and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    results = [r for arch in ARCHS if (r := measure(args.project, arch, args.coverage)) is not None]
    if not results:
        raise SystemExit(
            f"no trained models under {args.project / 'data' / '06_models'}; run train_all first"
        )
    command = f"python benchmarks/bench_conformal.py --coverage {args.coverage}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"bench_conformal{args.tag}.json").write_text(json.dumps(results, indent=2, default=float))
    (RESULTS_DIR / f"bench_conformal{args.tag}.md").write_text(_markdown(results, command, args.coverage))


if __name__ == "__main__":
    main()
