"""Benchmark of conformal sets refitted on a lab's own detector unit (``inference.unit_conformal``), on the models
of a finished ``kedro run --pipeline train_all``.

For every trained architecture under ``<project>/data`` and every detector unit of ``--units`` (seeds nothing in
the project trains, selects or fits on): fresh specimens at the nominal instrument imaged by that unit (the
instrument told to conditioned models fitted from the batch, as the evaluation set's is). ``--repeats`` times
per labelled-folder size of ``--sizes``: whole specimens drawn at random until the folder holds that many images
(what a lab labels), the sets refitted on them (:func:`alloy_mtl.evaluation.unit_conformal.fit_unit_sets`), and
per-alloy coverage measured on the unit's other images, beside the model's shipped sets (fitted on generated
images of 16 validation units) on the same images. A folder without 9 images of an alloy cannot be refitted at
90 % (the pipeline refuses it) and is counted as such.

Run: ``python benchmarks/bench_unit_conformal.py [--project .] [--units 950001,950002,950003] [--images 3000]
[--sizes 100,250,500,1000] [--repeats 20] [--tag _x] [--report-only]`` -> benchmarks/results/
bench_unit_conformal{tag}.json/.md (``--report-only``: the .md again from the saved .json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_conformal import ARCHS, held_out_sets
from machine import machine_name

from alloy_mtl.constants import ALLOYS
from alloy_mtl.datasets import TorchBundleDataset
from alloy_mtl.evaluation.unit_conformal import (
    TRUE_SUFFIX,
    UnitSets,
    fewest_per_class,
    fit_unit_sets,
    model_sets,
)
from alloy_mtl.mtl.labelled_prediction import predict_images
from alloy_mtl.mtl.models.multitask import load_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
TARGETS = ("thickness_mm", "absorption")
TOLERANCE = 0.03


def labelled_frame(predictions: pd.DataFrame) -> pd.DataFrame:
    """The evaluation contract's predictions (``<stem>_pred`` / ``_true``) in the served model's columns."""
    frame = predictions.rename(columns={f"{t}_pred": t for t in TARGETS})
    return frame.rename(columns={"alloy_true": f"alloy{TRUE_SUFFIX}"})


def shipped_sets(bundle: dict[str, Any]) -> UnitSets:
    """The model's own sets, as a :class:`UnitSets` (fitted on generated images)."""
    return model_sets(
        load_model(bundle).conformal, ALLOYS, dict(zip(("thickness", "absorption"), TARGETS, strict=True))
    )


def coverage(sets: UnitSets, frame: pd.DataFrame) -> dict[str, float]:
    """Per-alloy coverage, mean set size and each interval's coverage of ``sets`` on labelled ``frame``."""
    members = sets.members(frame)
    truth = pd.Index(list(ALLOYS)).get_indexer(frame[f"alloy{TRUE_SUFFIX}"].astype(str))
    covered = members[np.arange(len(frame)), truth]
    out = {alloy: float(covered[truth == i].mean()) for i, alloy in enumerate(ALLOYS)}
    out["set_size"] = float(members.sum(axis=1).mean())
    for target in TARGETS:
        error = np.abs(frame[f"{target}{TRUE_SUFFIX}"].to_numpy(float) - frame[target].to_numpy(float))
        out[target] = float((error <= sets.half_widths[target]).mean())
    return out


def draws(frame: pd.DataFrame, size: int, repeats: int, seed: int) -> list[np.ndarray]:
    """``repeats`` boolean masks of whole specimens drawn at random until ``size`` images are labelled."""
    specimens = frame["specimen_id"].astype(str).to_numpy()
    unique = np.unique(specimens)
    per = pd.Series(specimens).value_counts()
    masks = []
    for r in range(repeats):
        order = np.random.default_rng([seed, size, r]).permutation(unique)
        chosen = order[: int(np.searchsorted(per[order].cumsum().to_numpy(), size)) + 1]
        masks.append(np.isin(specimens, chosen))
    return masks


def measure(
    project: Path, arch: str, units: dict[str, tuple], sizes: list[int], *, repeats: int, level: float
) -> dict[str, Any] | None:
    """One architecture: shipped and refitted coverage per unit and folder size (None: not trained)."""
    path = project / "data" / "06_models" / arch / "model.pt"
    if not path.is_file():
        return None
    bundle = TorchBundleDataset(filepath=str(path)).load()
    shipped = shipped_sets(bundle)
    out: dict[str, Any] = {"arch": arch, "units": {}}
    for unit, (images, metadata, instrument) in units.items():
        frame = labelled_frame(predict_images(bundle, images, metadata, instrument=instrument))
        report: dict[str, Any] = {"n_images": len(frame), "shipped_whole_unit": coverage(shipped, frame)}
        for size in sizes:
            runs, refused = [], 0
            for mask in draws(frame, size, repeats, seed=0):
                folder, rest = frame[mask], frame[~mask]
                try:
                    refit = fit_unit_sets(folder, ALLOYS, TARGETS, level)
                except ValueError:
                    refused += 1
                    continue
                runs.append({"refit": coverage(refit, rest), "shipped": coverage(shipped, rest)})
            report[str(size)] = {"refused": refused, "runs": runs}
        out["units"][unit] = report
    return out


def _summary(runs: list[dict[str, Any]], which: str, level: float) -> tuple[str, str, str, str]:
    per_alloy = np.array([[run[which][a] for a in ALLOYS] for run in runs])
    within = np.mean(np.all(np.abs(per_alloy - level) <= TOLERANCE + 1e-9, axis=1))
    lowest, highest = per_alloy.min(axis=1), per_alloy.max(axis=1)
    sizes = np.array([run[which]["set_size"] for run in runs])
    return (
        f"{lowest.mean():.3f} ({lowest.min():.3f})",
        f"{highest.mean():.3f} ({highest.max():.3f})",
        f"{within:.0%}",
        f"{sizes.mean():.2f}",
    )


def summary_rows(results: list[dict[str, Any]], sizes: list[int], level: float) -> list[str]:
    """Per folder size, over every model, unit and alloy: the range of each alloy's mean coverage over folders
    (bias), the median of its sd over folders (spread), the mean distance from ``level`` and the share of folders
    with every alloy within the tolerance, for the shipped and the refitted sets."""
    rows = []
    for size in sizes:
        for which in ("shipped", "refit"):
            means, sds, distance, within, refused, folders = [], [], [], [], 0, 0
            for r in results:
                for report in r["units"].values():
                    cell = report[str(size)]
                    refused += cell["refused"] if which == "refit" else 0
                    folders += len(cell["runs"]) + cell["refused"]
                    if not cell["runs"]:
                        continue
                    per_alloy = np.array([[run[which][a] for a in ALLOYS] for run in cell["runs"]])
                    means += per_alloy.mean(axis=0).tolist()
                    sds += per_alloy.std(axis=0).tolist()
                    distance += np.abs(per_alloy - level).ravel().tolist()
                    within += np.all(np.abs(per_alloy - level) <= TOLERANCE + 1e-9, axis=1).tolist()
            rows.append(
                f"| {size} | {which} | {min(means):.3f}-{max(means):.3f} | {np.median(sds):.3f} | "
                f"{np.mean(distance):.3f} | {np.mean(within):.0%} | "
                f"{f'{refused} of {folders}' if which == 'refit' else ''} |"
            )
    return rows


def markdown(
    results: list[dict[str, Any]], command: str, sizes: list[int], level: float, repeats: int
) -> str:
    """The results page: the summary over models and units, then every model and unit."""
    units = sorted({unit for r in results for unit in r["units"]})
    lines = [
        "# Conformal sets refitted on the detector unit in operation",
        "",
        f"`{command}` on {machine_name()}. Per model and unseen detector unit, {repeats} labelled folders of each "
        "size (whole specimens drawn at random), the sets refitted on each at "
        f"{level:.0%} per alloy, coverage measured on the unit's other images; the model's shipped sets (fitted on "
        "generated images of 16 validation units) on the same images. Lowest / highest alloy: mean over folders "
        f"(worst); 'every alloy within +-{TOLERANCE * 100:.0f}': the share of folders whose five alloys all land within "
        f"{TOLERANCE * 100:.0f} points of {level:.0%}. Refused: folders without {fewest_per_class(level)} images of "
        "every alloy.",
        "",
        f"## Summary: {len(results)} models x {len(units)} units x {len(ALLOYS)} alloys",
        "",
        "Per alloy: its mean coverage over the folders (the range over models, units and alloys: how far the sets "
        "sit from the target on a unit), the spread of its coverage from folder to folder (median sd), and the mean "
        "distance of a single folder's coverage from the target.",
        "",
        "| labelled images | sets | per-alloy mean coverage | sd over folders | mean distance from target | "
        f"every alloy within +-{TOLERANCE * 100:.0f} | refused |",
        "|---|---|---|---|---|---|---|",
        *summary_rows(results, sizes, level),
        "",
        "## Every model and unit",
        "",
        "| model | unit | labelled images | sets | lowest alloy | highest alloy | every alloy within +-3 | "
        "mean set size | thickness | absorption | refused |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for unit, report in r["units"].items():
            for size in sizes:
                cell = report[str(size)]
                if not cell["runs"]:
                    lines.append(f"| {r['arch']} | {unit} | {size} | | | | | | | | {cell['refused']} |")
                    continue
                for which in ("shipped", "refit"):
                    low, high, within, set_size = _summary(cell["runs"], which, level)
                    intervals = " | ".join(
                        f"{np.mean([run[which][t] for run in cell['runs']]):.3f}" for t in TARGETS
                    )
                    lines.append(
                        f"| {r['arch']} | {unit} | {size} | {which} | {low} | {high} | {within} | {set_size} | "
                        f"{intervals} | {cell['refused'] if which == 'refit' else ''} |"
                    )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure every trained architecture and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--units", default="950001,950002,950003")
    parser.add_argument("--images", type=int, default=3000, help="fresh images per unit")
    parser.add_argument("--sizes", default="100,250,500,1000")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--tag", default="")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the saved .json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    command = (
        f"python benchmarks/bench_unit_conformal.py --units {args.units} --images {args.images} "
        f"--sizes {args.sizes} --repeats {args.repeats} --coverage {args.coverage}"
    )
    saved = RESULTS_DIR / f"bench_unit_conformal{args.tag}.json"
    if args.report_only:
        results = json.loads(saved.read_text())
        (RESULTS_DIR / f"bench_unit_conformal{args.tag}.md").write_text(
            markdown(results, command, sizes, args.coverage, args.repeats)
        )
        return
    units = held_out_sets(args.project, [int(s) for s in args.units.split(",") if s], args.images)
    results = [
        r
        for arch in args.archs.split(",")
        if (r := measure(args.project, arch, units, sizes, repeats=args.repeats, level=args.coverage))
        is not None
    ]
    if not results:
        raise SystemExit(
            f"no trained models under {args.project / 'data' / '06_models'}; run train_all first"
        )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(results, default=float))
    (RESULTS_DIR / f"bench_unit_conformal{args.tag}.md").write_text(
        markdown(results, command, sizes, args.coverage, args.repeats)
    )


if __name__ == "__main__":
    main()
