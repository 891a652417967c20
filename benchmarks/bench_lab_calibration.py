"""Benchmark of calibration to a lab's instrument on synthetic labs with hidden settings.

Part 1 (default): ``--labs`` synthetic labs (``alloy_mtl.data.synthetic_lab``), each with its own detector unit
and hidden settings drawn uniformly inside the issue's ranges (kV x0.95-1.05, Al filter 0-2 mm, CsI 0.1-0.3 mm,
scatter x1/3-3; blur and dose nominal), 10 calibration radiographs of 1050 and 250 balanced labelled test images,
written as 16-bit PNG and read back through the ingest. Per lab:

* the calibration (``calibrate_instrument``, every setting fitted): errors against the hidden truth, whether the
  95 % intervals hold it, settings reported not identifiable, seconds (2-core machine, BLAS threads as numpy
  starts them);
* the physics-limit macro AP on the test images, told (a) the nominal instrument with the declared tolerances of
  ``conf/base/parameters_data_processing.yml`` (joint fit inside them: uncalibrated), (b) the calibrated instrument
  with the same tolerance widths about it (what ``evaluate_external`` does once calibrated), (c) the hidden truth.

Part 2 (``--train``): the issue's lab-like instrument (kV +4 %, 1.6 mm Al, 0.3 mm CsI, scatter x2, another
detector) through the three commands, in two fresh copies of the project: ``kedro run`` (train_all, nominal)
then ``evaluate_external``; and ``calibrate_instrument``, ``kedro run`` (now on the calibrated instrument) and
``evaluate_external``. Writes both comparison tables (about 30 minutes on 2 cores).

Run: ``python benchmarks/bench_lab_calibration.py [--labs 8] [--train]`` -> benchmarks/results/
bench_lab_calibration.json and .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from machine import machine_name
from project_copy import kedro_env, project_copy
from sklearn.metrics import average_precision_score

from alloy_mtl.constants import ALLOYS
from alloy_mtl.data.frames import read_frames
from alloy_mtl.data.ingest import ingest_csv_folder
from alloy_mtl.data.synthetic_lab import write_synthetic_lab
from alloy_mtl.physics.calibrated_generation import nominal_generation, resolve_generation
from alloy_mtl.physics.estimator import PhysicsLimitEstimator
from alloy_mtl.physics.flat_field_noise import flat_field_noise
from alloy_mtl.physics.instrument_calibration import calibrate_instrument
from alloy_mtl.physics.simulator import SimulationConfig

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
HIDDEN_RANGES = {
    "kv_scale": (0.95, 1.05),
    "al_filter_mm": (0.0, 2.0),
    "scintillator_mm": (0.1, 0.3),
    "scatter_fraction_scale": (1 / 3, 3.0),
}
PER_CHANNEL_MODES: dict[str, Any] = {"off": False, "auto": "auto", "on": True}
NOISE_RANGES = {"blur_sigma_px": (0.4, 1.2), "dose_scale": (0.5, 1.5)}
"""Hidden detector blur and dose drawn with ``--noise`` (else nominal)."""
LAB_LIKE = {"kv_scale": 1.04, "al_filter_mm": 1.6, "scintillator_mm": 0.3, "scatter_fraction_scale": 2.0}


def _generation() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "conf/base/parameters_data_processing.yml").read_text())["generation"]


def _nominal_config(generation: dict[str, Any]) -> SimulationConfig:
    return SimulationConfig.from_params(
        {**nominal_generation(generation), "instruments": 1, "tolerances": {}, "randomise": None}
    )


def _macro_ap(frame: pd.DataFrame, truth: np.ndarray) -> float:
    return float(np.mean([average_precision_score(truth == a, frame[f"prob_{a}"]) for a in ALLOYS]))


def _physics_ap(generation: dict[str, Any], images: np.ndarray, truth: np.ndarray) -> tuple[float, dict]:
    config = SimulationConfig.from_params(generation)
    estimator = PhysicsLimitEstimator.within_declared(config)
    return _macro_ap(estimator.predict(images), truth), estimator.fitted_instrument or {}


def lab_row(  # noqa: PLR0913 (a lab and how it is calibrated)
    index: int,
    generation: dict[str, Any],
    hidden: dict[str, float],
    folder: Path,
    *,
    channel_kv_scale: list[float] | None = None,
    per_channel_kv: str = "auto",
    n_flats: int = 0,
) -> list[dict[str, Any]]:
    """Calibrate one synthetic lab (one row per mode of ``per_channel_kv``, comma-separated, each optionally
    ``+flats``: with the lab's ``n_flats`` flat fields) and score the physics limit on its test folder three
    ways."""
    nominal = _nominal_config(generation)
    lab = write_synthetic_lab(
        folder,
        nominal,
        hidden,
        detector_seed=8100 + index,
        seed=300 + index,
        channel_kv_scale=channel_kv_scale,
        n_flats=n_flats,
    )
    calibration_data = ingest_csv_folder(lab.calibration, required_alloys=None)
    test = ingest_csv_folder(lab.test)
    truth = test.metadata["alloy"].astype(str).to_numpy()
    uncalibrated, _ = _physics_ap(nominal_generation(generation), test.images, truth)
    hidden_record = {"instrument": lab.instrument, "channel_kv_scale": channel_kv_scale}
    oracle, _ = _physics_ap(
        resolve_generation({**generation, "instrument": "calibrated"}, hidden_record), test.images, truth
    )
    true_kv = np.array(nominal.kv) * lab.instrument["kv_scale"] * np.array(channel_kv_scale or 1.0)
    rows = []
    for mode in per_channel_kv.split(","):
        started = time.perf_counter()
        noise = None
        if mode.endswith("+flats"):
            noise = flat_field_noise(read_frames(lab.calibration / "flats", None, "flats"), nominal)
        calibration = calibrate_instrument(
            calibration_data.images,
            calibration_data.metadata["alloy"].astype(str).tolist(),
            calibration_data.metadata["thickness_mm"].to_numpy(float),
            nominal,
            per_channel_kv=PER_CHANNEL_MODES[mode.removesuffix("+flats")],
            known=None if noise is None else noise.instrument(),
            noise_variance=None if noise is None else noise.noise_variance,
        )
        seconds = time.perf_counter() - started
        record = calibration.to_dict()
        resolved = resolve_generation({**generation, "instrument": "calibrated"}, record)
        calibrated, _ = _physics_ap(resolved, test.images, truth)
        settings = {s.key: s for s in calibration.settings}
        fit_kv = np.array(resolved["kv"])
        row: dict[str, Any] = {"lab": index, "per_channel_kv": mode, "seconds": round(seconds, 1)}
        for key in (*HIDDEN_RANGES, *NOISE_RANGES):
            s = settings[key]
            row[f"{key}_true"] = lab.instrument[key]
            row[f"{key}_fit"] = s.value
            row[f"{key}_covered"] = bool(s.identifiable and s.low <= lab.instrument[key] <= s.high)
            row[f"{key}_given"] = s.given
        row["channel_kv_scale_true"] = channel_kv_scale
        row["channel_kv_scale_fit"] = record.get("channel_kv_scale")
        row["channel_kv_p_value"] = (calibration.channel_kv_test or {}).get("p_value")
        row["kv_error_pct"] = 100 * float(np.max(np.abs(fit_kv / true_kv - 1)))
        row["filter_error_mm"] = abs(settings["al_filter_mm"].value - lab.instrument["al_filter_mm"])
        row["not_identifiable"] = ",".join(calibration.not_identifiable)
        row |= {
            "physics_uncalibrated": uncalibrated,
            "physics_calibrated": calibrated,
            "physics_truth": oracle,
        }
        rows.append(row)
    return rows


def _kedro(project: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args], cwd=project, env=kedro_env(project), check=True
    )


def train_rows(work: Path) -> dict[str, Any]:
    """The lab-like instrument through the three commands, uncalibrated and calibrated."""
    generation = _generation()
    lab = write_synthetic_lab(
        work / "lab", _nominal_config(generation), LAB_LIKE, detector_seed=9901, seed=77
    )
    tables = {}
    for mode in ("uncalibrated", "calibrated"):
        project = project_copy(work / mode)
        started = time.perf_counter()
        if mode == "calibrated":
            _kedro(
                project,
                "--pipeline",
                "calibrate_instrument",
                "--params",
                f"calibration.path={lab.calibration}",
            )
        _kedro(project)
        _kedro(project, "--pipeline", "evaluate_external", "--params", f"external.path={lab.test}")
        table = pd.read_csv(project / "data/08_reporting/external/comparison.csv")
        tables[mode] = {
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "rows": table[["model", "macro_ap", "macro_ap_ci_low", "macro_ap_ci_high", "accuracy"]].to_dict(
                "records"
            ),
        }
    return {"instrument": LAB_LIKE, "tables": tables}


def _verdict(row: dict[str, Any], key: str) -> str:
    if row.get(f"{key}_given"):
        return " (flat fields)"
    return "" if row[f"{key}_covered"] else " (outside CI)"


def _markdown(labs: pd.DataFrame, trained: dict[str, Any] | None, command: str) -> str:
    lines = [
        "# Calibration to a lab's instrument",
        "",
        f"Machine: {machine_name()}. `{command}`. 10 calibration radiographs of 1050 per lab, 250 balanced test "
        "images.",
        "",
        "| lab | mode | kV true / fit | channel kV error % (max) | filter mm true / fit | CsI mm true / fit "
        "| scatter x true / fit | blur px true / fit | dose x true / fit | not identifiable | s "
        "| physics AP uncalibrated | calibrated | told the truth |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in labs.iterrows():
        cells = [
            f"{r[f'{k}_true']:.3f} / {r[f'{k}_fit']:.3f}{_verdict(r, k)}"
            for k in (*HIDDEN_RANGES, *NOISE_RANGES)
        ]
        fitted = r["channel_kv_scale_fit"]
        per_channel = f"{r['per_channel_kv']}: " + (
            "one factor" if fitted is None else "/".join(f"{f:.3f}" for f in fitted)
        )
        if r["channel_kv_scale_true"] is not None:
            per_channel += " (true " + "/".join(f"{f:.3f}" for f in r["channel_kv_scale_true"]) + ")"
        lines.append(
            f"| {r['lab']} | {per_channel} | {cells[0]} | {r['kv_error_pct']:.2f} | "
            + " | ".join(cells[1:])
            + f" | {r['not_identifiable'] or '-'} | {r['seconds']:.0f} | "
            f"{r['physics_uncalibrated']:.3f} | {r['physics_calibrated']:.3f} | {r['physics_truth']:.3f} |"
        )
    lines.append("")
    for mode, group in labs.groupby("per_channel_kv", sort=False):
        lines.append(
            f"- `per_channel_kv: {mode}`: channel kV error max {group['kv_error_pct'].max():.2f} %, filter error "
            f"max {group['filter_error_mm'].max():.3f} mm; calibration {group['seconds'].mean():.0f} s mean, "
            f"{group['seconds'].max():.0f} s max. Physics-limit macro AP calibrated: min "
            f"{group['physics_calibrated'].min():.3f}, mean {group['physics_calibrated'].mean():.3f} "
            f"(uncalibrated: mean {group['physics_uncalibrated'].mean():.3f})."
        )
    lines.append("")
    if trained:
        lines += [f"## The lab-like instrument through the three commands ({trained['instrument']})", ""]
        for mode, table in trained["tables"].items():
            lines += [
                f"{mode} ({table['minutes']} min):",
                "",
                "| model | macro AP [95 % CI] | accuracy |",
                "|---|---|---|",
            ]
            lines += [
                f"| {r['model']} | {r['macro_ap']:.3f} [{r['macro_ap_ci_low']:.3f}, {r['macro_ap_ci_high']:.3f}] | "
                f"{r['accuracy']:.3f} |"
                for r in table["rows"]
            ]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write its JSON and Markdown results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--train", action="store_true", help="also run the three commands on the lab-like lab"
    )
    parser.add_argument(
        "--per-channel-kv",
        default="auto",
        help="calibration modes, comma-separated, one row each: off (false), auto (the pipeline's default), "
        "on (true)",
    )
    parser.add_argument(
        "--channel-kv-spread",
        type=float,
        default=0.0,
        help="hidden per-channel tube-voltage factors drawn uniformly in 1 +- this (0: one factor on all)",
    )
    parser.add_argument("--flats", type=int, default=0, help="flat fields per lab (modes '<mode>+flats')")
    parser.add_argument("--noise", action="store_true", help="hidden blur and dose too (NOISE_RANGES)")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    generation = _generation()
    n_channels = len(_nominal_config(generation).kv)
    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.labs):
            ranges = {**HIDDEN_RANGES, **(NOISE_RANGES if args.noise else {})}
            hidden = {key: float(rng.uniform(*bounds)) for key, bounds in ranges.items()}
            spread = args.channel_kv_spread
            channels = (
                [float(f) for f in rng.uniform(1 - spread, 1 + spread, n_channels)] if spread > 0 else None
            )
            rows += lab_row(
                index,
                generation,
                hidden,
                Path(tmp) / f"lab{index}",
                channel_kv_scale=channels,
                per_channel_kv=args.per_channel_kv,
                n_flats=args.flats,
            )
            print(json.dumps(rows[-1], default=float), flush=True)  # noqa: T201 (a benchmark's progress)
        trained = train_rows(Path(tmp)) if args.train else None
    labs = pd.DataFrame(rows)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    result = {
        "labs": rows,
        "trained": trained,
        "seed": args.seed,
        "channel_kv_spread": args.channel_kv_spread,
    }
    name = f"bench_lab_calibration{args.tag}"
    command = "python benchmarks/bench_lab_calibration.py " + " ".join(sys.argv[1:])
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(_markdown(labs, trained, command.strip()))
    print(_markdown(labs, trained, command.strip()))  # noqa: T201


if __name__ == "__main__":
    main()
