"""Benchmark: can a weighted soft ensemble of a ``train_all`` run's models beat its best member?

Reads the saved predictions of a finished ``kedro run --pipeline train_all`` (no model is run):

* **Validation cross-validation**: the generated validation set the ``ensemble_selected`` weights are chosen
  on is split in halves by specimen, ``--repeats`` times; each method chooses on one half and is scored (macro
  AP) on the other, beside the single model that half would choose (best validation macro AP) and the best
  single model of the scoring half in hindsight (an optimistic bound no method can know).
* **Held out**: each method chosen on the whole validation set, scored on the evaluation set and on the worst
  of the robustness suite's unseen-detector and in-tolerance conditions, beside the validation-chosen single
  model and the best member in hindsight.
* **How alike the members are**: on the evaluation set, the share of images on which two models' top answers
  differ and the correlation of their true-class probabilities (an ensemble gains where members err apart).

Methods: ``equal`` (the ``ensemble_soft`` row), ``greedy`` and ``loglik`` (``ensemble_selected``'s, see
``alloy_mtl.evaluation.ensemble_selection``).

Run: ``python benchmarks/bench_ensemble.py [--project .] [--repeats 40] [--tag _x]`` ->
benchmarks/results/bench_ensemble{tag}.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Mapping
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import machine_name
from project_copy import suite_condition_kinds

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.classification import label_indices, prob_columns
from alloy_mtl.evaluation.ensemble_selection import greedy_weights, loglik_weights, macro_ap
from alloy_mtl.evaluation.robustness import SUMMARISED_KINDS, by_condition

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
ARCHS = ("resnet18", "resnet34", "resnet50", "vgg16", "efficientnet_b0", "fnn")
GREEDY_ROUNDS = 20
Probs = dict[str, np.ndarray]

METHODS: dict[str, Callable[[Probs, np.ndarray], dict[str, float]]] = {
    "equal": lambda probs, y: {name: 1.0 / len(probs) for name in probs},
    "greedy": lambda probs, y: greedy_weights(probs, y, GREEDY_ROUNDS)[0],
    "loglik": loglik_weights,
}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(
        path, dtype={"alloy_true": str, "alloy_pred": str, "specimen_id": str, "condition": str}
    )


def _arrays(frames: Mapping[str, pd.DataFrame]) -> tuple[Probs, np.ndarray, np.ndarray]:
    first = next(iter(frames.values()))
    for name, frame in frames.items():
        if list(frame["image_id"]) != list(first["image_id"]):
            raise ValueError(f"{name}: predictions of other images than {next(iter(frames))}'s")
    probs = {name: frame[prob_columns(ALLOYS)].to_numpy(float) for name, frame in frames.items()}
    return probs, label_indices(first["alloy_true"], ALLOYS), first["specimen_id"].to_numpy()


def _mixture(weights: Mapping[str, float], probs: Probs) -> np.ndarray:
    return sum(w * probs[name] for name, w in weights.items() if w > 0)


def _best_single(probs: Probs, y: np.ndarray) -> str:
    return max(probs, key=lambda name: macro_ap(y, probs[name]))


def cross_validation(
    probs: Probs, y: np.ndarray, specimens: np.ndarray, repeats: int, seed: int
) -> pd.DataFrame:
    """Per repeat and method: macro AP on the scoring half, the chosen single model's and the hindsight best's."""
    rng = np.random.default_rng(seed)
    unique = np.unique(specimens)
    rows = []
    for repeat in range(repeats):
        chosen = np.isin(specimens, rng.choice(unique, len(unique) // 2, replace=False))
        fit = {name: p[chosen] for name, p in probs.items()}
        score = {name: p[~chosen] for name, p in probs.items()}
        single = macro_ap(y[~chosen], score[_best_single(fit, y[chosen])])
        hindsight = max(macro_ap(y[~chosen], p) for p in score.values())
        for method, choose in METHODS.items():
            value = macro_ap(y[~chosen], _mixture(choose(fit, y[chosen]), score))
            rows.append(
                {
                    "repeat": repeat,
                    "method": method,
                    "macro_ap": value,
                    "chosen_single": single,
                    "hindsight_best": hindsight,
                }
            )
    return pd.DataFrame(rows)


def held_out(val: Probs, y_val: np.ndarray, tests: Mapping[str, tuple[Probs, np.ndarray]]) -> pd.DataFrame:
    """Each method (chosen on all of validation), the validation-chosen single model and every member, scored on
    each held-out set."""
    chosen = {method: choose(val, y_val) for method, choose in METHODS.items()}
    single = _best_single(val, y_val)
    rows = []
    for name, (probs, y) in tests.items():
        row: dict[str, Any] = {"set": name, "chosen_single": f"{single} {macro_ap(y, probs[single]):.4f}"}
        members = {arch: macro_ap(y, p) for arch, p in probs.items()}
        best = max(members, key=members.get)
        row["hindsight_best"] = f"{best} {members[best]:.4f}"
        for method, weights in chosen.items():
            row[method] = round(macro_ap(y, _mixture(weights, probs)), 4)
        rows.append(row)
    return pd.DataFrame(rows)


def similarity(probs: Probs, y: np.ndarray) -> pd.DataFrame:
    """Pairwise: share of images with different top answers, correlation of the true-class probabilities."""
    true_class = {name: p[np.arange(len(y)), y] for name, p in probs.items()}
    rows = []
    for first, second in combinations(probs, 2):
        rows.append(
            {
                "pair": f"{first} / {second}",
                "top_answer_differs": float(np.mean(probs[first].argmax(1) != probs[second].argmax(1))),
                "true_class_prob_corr": float(np.corrcoef(true_class[first], true_class[second])[0, 1]),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    output = args.project / "data" / "07_model_output"
    archs = [arch for arch in ARCHS if (output / arch / "val_predictions.csv").is_file()]
    if len(archs) < 2:
        raise SystemExit(
            f"{output}: fewer than two architectures' predictions; run `kedro run --pipeline train_all`"
        )
    val, y_val, specimens = _arrays({a: _read(output / a / "val_predictions.csv") for a in archs})
    tests = {
        "evaluation set": _arrays({a: _read(output / a / "evaluation_set_predictions.csv") for a in archs})[
            :2
        ]
    }
    conditions = {a: by_condition(_read(output / a / "robustness_predictions.csv")) for a in archs}
    kinds = suite_condition_kinds(args.project)
    for condition in conditions[archs[0]]:
        if kinds.get(condition) in SUMMARISED_KINDS:
            tests[condition] = _arrays({a: conditions[a][condition] for a in archs})[:2]
    cv = cross_validation(val, y_val, specimens, args.repeats, args.seed)
    summary = (
        cv.assign(
            minus_chosen_single=cv["macro_ap"] - cv["chosen_single"],
            minus_hindsight=cv["macro_ap"] - cv["hindsight_best"],
            at_least_chosen_single=cv["macro_ap"] >= cv["chosen_single"],
        )
        .groupby("method", sort=False)[
            ["macro_ap", "minus_chosen_single", "minus_hindsight", "at_least_chosen_single"]
        ]
        .mean()
        .round(4)
    )
    table = held_out(val, y_val, tests)
    alike = similarity(*tests["evaluation set"])
    record = {
        "machine": machine_name(),
        "project": str(args.project),
        "archs": archs,
        "repeats": args.repeats,
        "cross_validation": summary.reset_index().to_dict(orient="records"),
        "held_out": table.to_dict(orient="records"),
        "similarity": alike.to_dict(orient="records"),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"bench_ensemble{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
    lines = [
        "# Soft ensembles against their best member",
        "",
        f"Machine: {record['machine']}. Predictions of `{args.project}` ({', '.join(archs)}); "
        f"`python benchmarks/bench_ensemble.py --repeats {args.repeats}`.",
        "",
        f"## Validation cross-validation ({args.repeats} specimen halves: choose on one, score on the other)",
        "",
        "`minus_chosen_single`: the method's macro AP minus that of the single model the same half chooses; "
        "`minus_hindsight`: minus the best single model of the scoring half (not knowable); "
        "`at_least_chosen_single`: share of repeats where the method is at least as good as the chosen single.",
        "",
        summary.to_markdown(),
        "",
        "## Held out (chosen on the whole validation set)",
        "",
        table.to_markdown(index=False),
        "",
        "## How alike the members are (evaluation set)",
        "",
        alike.round(3).to_markdown(index=False),
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    logging.getLogger(__name__).warning("wrote %s.md", stem)


if __name__ == "__main__":
    main()
