"""Benchmark of the mixed option: a lab's few labelled images with the calibrated simulation, against each alone.

One synthetic lab with the calibration issue's lab-like instrument (kV +4 %, 1.6 mm Al, 0.3 mm CsI, scatter x2,
its own detector unit): 10 calibration radiographs of 1050, ``--labelled`` labelled training images per alloy
(three per specimen) and 50 held-out test images per alloy, as 16-bit PNG. In a fresh copy of the project per
variant, each architecture of ``--archs`` is trained by ``kedro run --pipeline data_processing`` and
``train_<arch>``, then scored on the lab's test folder by ``evaluate_external``:

* ``simulation``: ``calibrate_instrument``, then the calibrated simulation alone (the default data);
* ``lab only``: the lab's labelled folder alone (``data_source.kind: csv_folder``, split by specimen);
* ``mixed``: ``calibrate_instrument``, then the calibrated simulation with the lab's images mixed in
  (``data_source.lab_images``, share 0.2, every lab image in train).

Run: ``python benchmarks/bench_lab_mix.py [--archs fnn] [--labelled 12] [--seeds 1]`` ->
benchmarks/results/bench_lab_mix.json and .md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from bench_lab_calibration import LAB_LIKE, _generation, _kedro, _nominal_config, _project_copy
from machine import machine_name

from alloy_mtl.data.synthetic_lab import write_synthetic_lab

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
VARIANTS = ("simulation", "lab only", "mixed")
LAB_ONLY_SPLIT = {
    "strategy": "grouped",
    "fractions": {"train": 0.5, "val": 0.25, "test": 0.25},
    "min_per_class": {"train": 1, "val": 1, "test": 1},
}


def _configure(project: Path, variant: str, lab: Any, seed: int) -> None:
    """conf/local for one variant: its data source, and the seed of data, split and training."""
    local: dict[str, Any] = {"generation": {"seed": seed}, "training": {"seed": seed}}
    if variant == "lab only":
        local |= {
            "data_source": {"kind": "csv_folder", "path": str(lab.labelled)},
            "split": {**LAB_ONLY_SPLIT, "seed": seed},
            "evaluation": {"evaluation_set": {"enabled": False}},
        }
    elif variant == "mixed":
        local["data_source"] = {"lab_images": {"path": str(lab.labelled), "share": 0.2}}
    (project / "conf/local/parameters.yml").write_text(yaml.safe_dump(local))


def run_variant(work: Path, variant: str, lab: Any, archs: list[str], seed: int) -> dict[str, Any]:
    """One variant, one seed: train ``archs`` and score them (and the physics limit) on the lab's test folder."""
    project = _project_copy(work / f"{variant.replace(' ', '_')}-{seed}")
    _configure(project, variant, lab, seed)
    started = time.perf_counter()
    if variant != "lab only":
        _kedro(
            project, "--pipeline", "calibrate_instrument", "--params", f"calibration.path={lab.calibration}"
        )
    _kedro(project, "--pipeline", "data_processing")
    for arch in archs:
        _kedro(project, "--pipeline", f"train_{arch}")
    _kedro(project, "--pipeline", "evaluate_external", "--params", f"external.path={lab.test}")
    table = pd.read_csv(project / "data/08_reporting/external/comparison.csv")
    rows = table[table["model"].isin([*archs, "physics_limit"])]
    return {
        "variant": variant,
        "seed": seed,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "rows": rows[["model", "macro_ap", "macro_ap_ci_low", "macro_ap_ci_high", "accuracy"]].to_dict(
            "records"
        ),
    }


def markdown(result: dict[str, Any]) -> str:
    """Per variant and model: macro AP on the lab's test folder, mean +- sd over seeds (one seed: its interval)."""
    frame = pd.DataFrame(
        [
            {"variant": run["variant"], "seed": run["seed"], **row}
            for run in result["runs"]
            for row in run["rows"]
        ]
    )
    lines = [
        "# The mixed option: a lab's labelled images with the calibrated simulation",
        "",
        f"Machine: {result['machine']}. `python benchmarks/bench_lab_mix.py --archs {','.join(result['archs'])} "
        f"--labelled {result['labelled']} --seeds {result['seeds']}`. Lab-like instrument {LAB_LIKE}, its own "
        f"detector; {result['labelled']} labelled training images per alloy, scored on 250 held-out labelled "
        "images of the lab (macro AP; one seed: the specimen-bootstrap 95 % interval; several: mean +- sd).",
        "",
        "| model | " + " | ".join(VARIANTS) + " |",
        "|---|" + "---|" * len(VARIANTS),
    ]
    for model in [*result["archs"], "physics_limit"]:
        cells = []
        for variant in VARIANTS:
            runs = frame[(frame["variant"] == variant) & (frame["model"] == model)]
            if runs.empty:
                cells.append("-")
            elif len(runs) == 1:
                r = runs.iloc[0]
                cells.append(f"{r['macro_ap']:.3f} [{r['macro_ap_ci_low']:.3f}, {r['macro_ap_ci_high']:.3f}]")
            else:
                cells.append(f"{runs['macro_ap'].mean():.3f} +- {runs['macro_ap'].std(ddof=1):.3f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    minutes = {v: sum(r["minutes"] for r in result["runs"] if r["variant"] == v) for v in VARIANTS}
    lines += [
        "",
        "Minutes per variant (all seeds): " + ", ".join(f"{v} {m:.0f}" for v, m in minutes.items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the variants and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="fnn", help="comma-separated architectures")
    parser.add_argument(
        "--labelled", type=int, default=12, help="labelled lab images per alloy (3 per specimen)"
    )
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    archs = args.archs.split(",")
    generation = _generation()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        lab = write_synthetic_lab(
            Path(tmp) / "lab",
            _nominal_config(generation),
            LAB_LIKE,
            detector_seed=9901,
            seed=77,
            labelled_per_alloy=args.labelled,
        )
        for seed in range(42, 42 + args.seeds):
            for variant in VARIANTS:
                runs.append(run_variant(Path(tmp), variant, lab, archs, seed))
                print(json.dumps(runs[-1]), flush=True)  # noqa: T201 (a benchmark's progress)
    result = {
        "machine": machine_name(),
        "archs": archs,
        "labelled": args.labelled,
        "seeds": args.seeds,
        "instrument": LAB_LIKE,
        "runs": runs,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "bench_lab_mix.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (RESULTS_DIR / "bench_lab_mix.md").write_text(markdown(result))
    print(markdown(result))  # noqa: T201


if __name__ == "__main__":
    main()
