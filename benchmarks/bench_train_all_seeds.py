"""Benchmark: ``kedro run --pipeline train_all`` over training seeds, each in a fresh copy of the project.

For every ``--seeds`` value, a fresh project (this checkout's ``conf/base`` and ``pyproject.toml``, its own
``data/`` and MLflow store) runs ``kedro run --params training.seed=<seed>`` (the default pipeline, train_all;
the data and the robustness suite's specimens stay those of ``generation.seed``), timed. Read back per model:
the evaluation set's macro AP (an unseen detector unit), the robustness suite's reference (same detector), its 3
unseen detector units (mean and lowest), the worst in-tolerance condition, the worst of those 9 (the gate's
summary) and the largest gap to the physics ceiling over them. Reported per seed and as mean +- sd over seeds,
with issue 27's targets checked on the means.

Run: ``python benchmarks/bench_train_all_seeds.py [--seeds 42 43 44] [--work DIR] [--tag _x]`` ->
benchmarks/results/bench_train_all_seeds{tag}.json and .md (about 15 minutes per seed on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from machine import machine_name
from project_copy import kedro_env, project_copy, suite_condition_kinds

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
logger = logging.getLogger(__name__)


def run_seed(work: Path, seed: int) -> tuple[Path, float]:
    """train_all with ``training.seed=seed`` in a fresh project under ``work``; its folder and wall minutes."""
    project = project_copy(work / f"seed{seed}")
    started = time.perf_counter()
    with (project / "kedro_run.log").open("w") as log:
        subprocess.run(
            [sys.executable, "-m", "kedro", "run", "--params", f"training.seed={seed}"],
            cwd=project,
            env=kedro_env(project),
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return project, (time.perf_counter() - started) / 60


def model_rows(project: Path) -> pd.DataFrame:
    """Per model of one run: the evaluation set's and the suite's scores (module docstring)."""
    reporting = project / "data" / "08_reporting"
    suite = pd.read_csv(reporting / "robustness" / "robustness.csv")
    comparison = pd.read_csv(reporting / "comparison.csv")
    evaluation = comparison[comparison["evaluated_on"] == "evaluation_set"].set_index("model")["macro_ap"]
    kinds = suite_condition_kinds(project)
    suite["kind"] = suite["condition"].map(kinds)
    wide = suite.pivot(index="model", columns="condition", values="macro_ap")
    unseen = [c for c in wide.columns if kinds.get(c) == "unseen_detector"]
    tolerance = [c for c in wide.columns if kinds.get(c) == "in_tolerance"]
    reference = next(c for c in wide.columns if kinds.get(c) == "reference")
    gap = (wide.loc["physics_limit", unseen + tolerance] - wide[unseen + tolerance]).max(axis=1)
    return pd.DataFrame(
        {
            "evaluation_set": evaluation.reindex(wide.index),
            "same_detector": wide[reference],
            "unseen_mean": wide[unseen].mean(axis=1),
            "unseen_lowest": wide[unseen].min(axis=1),
            "own_minus_unseen_lowest": wide[reference] - wide[unseen].min(axis=1),
            "worst_in_tolerance": wide[tolerance].min(axis=1),
            "summary_worst": wide[unseen + tolerance].min(axis=1),
            "gap_to_ceiling": gap.where(wide.index != "physics_limit"),
        }
    )


def _markdown(per_seed: pd.DataFrame, summary: pd.DataFrame, minutes: dict[int, float | None]) -> str:
    seeds = " ".join(str(s) for s in minutes)
    existing = " ".join(f"{seed}=<project>" for seed, m in minutes.items() if m is None)
    lines = [
        "# train_all over training seeds",
        "",
        f"Machine: {machine_name()}. `python benchmarks/bench_train_all_seeds.py --seeds {seeds}"
        + (f" --existing {existing}" if existing else "")
        + "`: each seed a "
        "fresh project copy running `kedro run --params training.seed=<seed>` (data and suite specimens fixed by "
        "`generation.seed`). Wall time per seed: "
        + ", ".join(
            f"{seed}: an existing run, not timed here" if m is None else f"{seed}: {m:.1f} min"
            for seed, m in minutes.items()
        )
        + ".",
        "",
        "Macro AP; `unseen` = the suite's 3 unseen detector units, `worst_in_tolerance` = the lowest of its 6 "
        "in-tolerance conditions, `summary_worst` = the lowest of those 9 (the gate's metric), `gap_to_ceiling` = "
        "the largest distance to the physics ceiling over them.",
        "",
        "## Mean +- sd over seeds",
        "",
        summary.to_markdown(),
        "",
        "## Per seed",
        "",
        per_seed.round(4).to_markdown(),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument(
        "--work", type=Path, default=None, help="where the project copies go (default: a temp dir)"
    )
    parser.add_argument(
        "--existing",
        nargs="*",
        default=[],
        metavar="SEED=PROJECT",
        help="a train_all already run with that training seed, read from its project folder instead of rerun",
    )
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="train_all_seeds_"))
    frames: list[pd.DataFrame] = []
    minutes: dict[int, float | None] = {}
    existing = {int(seed): Path(path) for seed, path in (item.split("=", 1) for item in args.existing)}
    for seed, project in existing.items():
        logger.info("seed %d: read from %s (not rerun)", seed, project)
        frames.append(model_rows(project).assign(seed=seed))
        minutes[seed] = None
    for seed in (s for s in args.seeds if s not in existing):
        logger.info("seed %d: kedro run in %s", seed, work / f"seed{seed}")
        project, minutes[seed] = run_seed(work, seed)
        logger.info("seed %d: %.1f min", seed, minutes[seed])
        frames.append(model_rows(project).assign(seed=seed))
    per_seed = pd.concat(frames).rename_axis("model").reset_index().set_index(["model", "seed"]).sort_index()
    stats = per_seed.groupby(level="model").agg(["mean", "std"])
    summary = pd.DataFrame(
        {
            column: [
                f"{stats.loc[m, (column, 'mean')]:.3f} +- {stats.loc[m, (column, 'std')]:.3f}"
                if pd.notna(stats.loc[m, (column, "mean")])
                else ""
                for m in stats.index
            ]
            for column in per_seed.columns
        },
        index=stats.index,
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"bench_train_all_seeds{args.tag}"
    record = {
        "machine": machine_name(),
        "seeds": args.seeds,
        "minutes": minutes,
        "per_seed": per_seed.reset_index().to_dict(orient="records"),
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
    stem.with_suffix(".md").write_text(_markdown(per_seed, summary, minutes))
    logger.info("wrote %s.md", stem)


if __name__ == "__main__":
    main()
