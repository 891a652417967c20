"""Benchmark of where the conformal sets and intervals are fitted, on the models of a finished ``kedro run
--pipeline train_all``.

For every trained architecture under ``<project>/data`` and every ``--fit-on`` choice (``training.conformal_set``:
``validation_split``, ``generated``, ``generated_tolerances``): ``ConformalSets.fit`` at ``--coverage``
(class-conditional) on the model's own calibrated predictions of that set, then the coverage per alloy, mean set
size and interval coverage on the run's evaluation set (fresh specimens, a detector unit training never saw, the
nominal instrument) and on each robustness-suite condition. Nothing the sets are fitted on is measured: the
generated sets are other specimens imaged by other (validation) detector units. The evaluation set also chose
the default (``generated``); ``--held-out-units`` measures every choice again on fresh specimens imaged by detector
units nothing in the project uses (the instrument told to conditioned models fitted from each batch, as the
evaluation set's is).

Run: ``python benchmarks/bench_conformal.py [--project .] [--coverage 0.9] [--fit-on a,b] [--images 5000]
[--held-out-units 950001,950002] [--tag _x]`` -> benchmarks/results/bench_conformal{tag}.json and .md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kedro.config import OmegaConfigLoader
from machine import machine_name

from alloy_mtl.constants import ALLOYS
from alloy_mtl.datasets import TorchBundleDataset, XrayStoreDataset
from alloy_mtl.evaluation.classification import label_indices, labelled_rows, prob_columns
from alloy_mtl.evaluation.conformal import conformal_coverage
from alloy_mtl.evaluation.evaluation_set import (
    batch_instrument,
    evaluation_set_config,
    simulate_conformal_set,
)
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.mtl.labelled_prediction import predict_images
from alloy_mtl.mtl.models.conformal import ConformalSets
from alloy_mtl.physics.simulator import simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
ARCHS = ("fnn", "efficientnet_b0", "resnet18", "resnet34", "resnet50", "vgg16")
TARGETS = {"thickness": "thickness_mm", "absorption": "absorption"}
FIT_ON = ("validation_split", "generated", "generated_tolerances")


def fitting_sets(
    project: Path, fit_on: list[str], n_images: int
) -> dict[str, tuple[np.ndarray, pd.DataFrame]]:
    """The labelled images of each ``fit_on`` choice (the validation split, or a generated conformal set)."""
    out = {}
    if "validation_split" in fit_on:
        model_input = XrayStoreDataset(
            path=str(project / "data" / "05_model_input" / "xray"), dtype="float16"
        ).load()
        val = (model_input.metadata["split"] == "val").to_numpy()
        out["validation_split"] = (
            np.asarray(model_input.images[val]),
            model_input.metadata[val].reset_index(drop=True),
        )
    generated = [choice for choice in fit_on if choice != "validation_split"]
    if generated:
        generation = OmegaConfigLoader(
            str(project / "conf"),
            base_env="base",
            default_run_env="local",
            merge_strategy={"parameters": "soft"},
        )["parameters"]["generation"]
        for choice in generated:
            out[choice] = simulate_conformal_set(
                generation, n_images, tolerances=choice == "generated_tolerances"
            )
    return out


HELD_OUT_SEED_OFFSET = 7_000_001
"""Added to the generation seed for the held-out check's specimens (none of any other set's)."""


def held_out_sets(project: Path, seeds: list[int], n_images: int) -> dict[str, tuple]:
    """Fresh specimens at the nominal instrument imaged by each detector unit of ``seeds``, which nothing in the
    project trains, selects or fits on: (images, metadata, instrument fitted from the batch) per unit."""
    generation = OmegaConfigLoader(
        str(project / "conf"), base_env="base", default_run_env="local", merge_strategy={"parameters": "soft"}
    )["parameters"]["generation"]
    out = {}
    for seed in seeds:
        config = evaluation_set_config(
            generation,
            EvaluationSetParams(
                n_images=n_images, seed_offset=HELD_OUT_SEED_OFFSET + seed, detector_seed=seed
            ),
        )
        images, metadata = simulate_dataset(config)
        out[f"unit_{seed}"] = (images, metadata, batch_instrument(generation, images))
    return out


def measure(
    project: Path,
    arch: str,
    coverage: float,
    sets: dict[str, tuple[np.ndarray, pd.DataFrame]],
    held_out: dict[str, tuple] | None = None,
) -> dict[str, Any] | None:
    """For one architecture, the sets fitted on each of ``sets`` and their coverage (None: not trained)."""
    data = project / "data"
    bundle_path = data / "06_models" / arch / "model.pt"
    if not bundle_path.is_file():
        return None
    bundle = TorchBundleDataset(filepath=str(bundle_path)).load()
    outputs = data / "07_model_output" / arch
    evaluation = pd.read_csv(outputs / "evaluation_set_predictions.csv", dtype={"alloy_true": str})
    suite_file = outputs / "robustness_predictions.csv"
    suite = pd.read_csv(suite_file, dtype={"alloy_true": str}) if suite_file.is_file() else None
    out: dict[str, Any] = {"arch": arch, "fit_on": {}}
    held_out_frames = {
        name: predict_images(bundle, images, metadata, instrument=instrument)
        for name, (images, metadata, instrument) in (held_out or {}).items()
    }
    for choice, (images, metadata) in sets.items():
        frame = predict_images(bundle, images, metadata)  # at the model's own temperature, as it answers
        labelled = labelled_rows(frame)  # the saved probabilities as they are (the model's temperature)
        probs = labelled[prob_columns()].to_numpy(np.float64)
        labels = label_indices(labelled["alloy_true"], ALLOYS)
        residuals = {
            task: np.abs(frame[f"{stem}_true"].to_numpy(float) - frame[f"{stem}_pred"].to_numpy(float))
            for task, stem in TARGETS.items()
        }
        fitted = ConformalSets(len(ALLOYS), list(TARGETS)).fit(probs, labels, residuals, coverage)
        report: dict[str, Any] = {"n_images": len(frame), "fitted": fitted}
        report["fitting_set"] = conformal_coverage(frame, fitted, list(ALLOYS), TARGETS)
        report["evaluation_set"] = conformal_coverage(evaluation, fitted, list(ALLOYS), TARGETS)
        if suite is not None:
            report["suite"] = {
                str(condition): conformal_coverage(rows, fitted, list(ALLOYS), TARGETS)
                for condition, rows in suite.groupby("condition", sort=False)
            }
        report["held_out"] = {
            name: conformal_coverage(frame, fitted, list(ALLOYS), TARGETS)
            for name, frame in held_out_frames.items()
        }
        out["fit_on"][choice] = report
    return out


def _row(name: str, report: dict[str, Any]) -> str:
    per_class = " | ".join(f"{report['per_class'][a]['coverage']:.3f}" for a in ALLOYS)
    intervals = " | ".join(f"{report['intervals'][t]['coverage']:.3f}" for t in TARGETS)
    return (
        f"| {name} | {report['coverage']:.3f} | {report['mean_set_size']:.2f} | {per_class} | {intervals} |"
    )


def _lowest(report: dict[str, Any]) -> float:
    return min(c["coverage"] for c in report["per_class"].values())


def _markdown(results: list[dict[str, Any]], command: str, coverage: float) -> str:
    header = (
        "| model | fitted on | coverage | mean set size | "
        + " | ".join(ALLOYS)
        + " | thickness | absorption |"
    )
    rule = "|---|---|---|---|" + "---|" * (len(ALLOYS) + 2)
    choices = list(results[0]["fit_on"])
    lines = [
        "# Conformal sets and intervals on a train_all run's models, by the set they are fitted on",
        "",
        f"`{command}` on {machine_name()}. Fitted for {coverage:.0%} coverage of every alloy (class-conditional) "
        "and of each regression target on: "
        + "; ".join(f"{c} ({results[0]['fit_on'][c]['n_images']} images)" for c in choices)
        + ". Coverage measured on the evaluation set (a detector unit the models and the fitting sets never saw, "
        "the nominal instrument) and, per model, its lowest alloy over each robustness-suite condition.",
        "",
        "## Evaluation set",
        "",
        header,
        rule,
        *[_row(f"{r['arch']} | {c}", r["fit_on"][c]["evaluation_set"]) for r in results for c in choices],
        "",
        "## The set fitted on (where the guarantee holds by construction)",
        "",
        header,
        rule,
        *[_row(f"{r['arch']} | {c}", r["fit_on"][c]["fitting_set"]) for r in results for c in choices],
        "",
    ]
    if results[0]["fit_on"][choices[0]]["held_out"]:
        lines += [
            "## Held-out detector units (fresh specimens, nominal instrument; nothing trained, selected or fitted on them)",
            "",
            "| model | fitted on | unit | coverage | lowest alloy | highest alloy | thickness | absorption |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            for c in choices:
                for unit, report in r["fit_on"][c]["held_out"].items():
                    alloys = [report["per_class"][a]["coverage"] for a in ALLOYS]
                    intervals = " | ".join(f"{report['intervals'][t]['coverage']:.3f}" for t in TARGETS)
                    lines.append(
                        f"| {r['arch']} | {c} | {unit} | {report['coverage']:.3f} | {min(alloys):.3f} | "
                        f"{max(alloys):.3f} | {intervals} |"
                    )
        lines.append("")
    suites = [r for r in results if r["fit_on"][choices[0]].get("suite")]
    if suites:
        conditions = list(suites[0]["fit_on"][choices[0]]["suite"])
        lines += [
            "## Robustness suite: lowest per-alloy coverage in each condition",
            "",
            "| model | fitted on | " + " | ".join(conditions) + " |",
            "|---|---|" + "---|" * len(conditions),
        ]
        for r in suites:
            for c in choices:
                cells = [f"{_lowest(r['fit_on'][c]['suite'][k]):.3f}" for k in conditions]
                lines.append(f"| {r['arch']} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every trained architecture and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--fit-on", default=",".join(FIT_ON))
    parser.add_argument("--images", type=int, default=5000, help="images of each generated set")
    parser.add_argument(
        "--held-out-units",
        default="",
        help="comma-separated detector seeds nothing else uses (e.g. 950001,950002): fresh evaluation sets on them",
    )
    parser.add_argument("--held-out-images", type=int, default=3000)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    fit_on = [c for c in args.fit_on.split(",") if c]
    unknown = sorted(set(fit_on) - set(FIT_ON))
    if unknown:
        raise SystemExit(f"--fit-on: {unknown} unknown; choose from {list(FIT_ON)}")
    sets = fitting_sets(args.project, fit_on, args.images)
    seeds = [int(seed) for seed in args.held_out_units.split(",") if seed]
    held_out = held_out_sets(args.project, seeds, args.held_out_images) if seeds else {}
    results = [
        r for arch in ARCHS if (r := measure(args.project, arch, args.coverage, sets, held_out)) is not None
    ]
    if not results:
        raise SystemExit(
            f"no trained models under {args.project / 'data' / '06_models'}; run train_all first"
        )
    command = (
        f"python benchmarks/bench_conformal.py --coverage {args.coverage} --fit-on {args.fit_on} "
        f"--images {args.images}"
        + (
            f" --held-out-units {args.held_out_units} --held-out-images {args.held_out_images}"
            if seeds
            else ""
        )
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"bench_conformal{args.tag}.json").write_text(json.dumps(results, indent=2, default=float))
    (RESULTS_DIR / f"bench_conformal{args.tag}.md").write_text(_markdown(results, command, args.coverage))


if __name__ == "__main__":
    main()
