"""Training recipes compared at equal compute: which option earns its place in the CPU default.

Every variant trains one architecture on the default generated data (``conf/base``, long tail, every nuisance
on) with the same number of image passes, overriding a few training settings of the default recipe. The
choice between variants is made on the validation split (macro AP of the selected checkpoint); the large
evaluation set of fresh specimens is reported beside it and never used to choose.

    python benchmarks/bench_recipes.py [--arch resnet18] [--variants reference select_ap ...] [--seeds 42]

Writes ``benchmarks/results/bench_recipes_<arch>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_learning import RESULTS, _conf, macro_ap, training_data  # noqa: E402

from alloy_mtl.evaluation.evaluation_set import simulate_evaluation_set  # noqa: E402
from alloy_mtl.evaluation.params import EvaluationSetParams  # noqa: E402
from alloy_mtl.mtl.experiment import predict_images, train_from_params  # noqa: E402
from alloy_mtl.mtl.params import deep_merge, parse_training_params  # noqa: E402

logger = logging.getLogger("bench_recipes")

SELECT_AP = {"monitor": {"metric": "val_alloy_ap", "mode": "max"}}
#: Named overrides of the default recipe.
VARIANTS: dict[str, dict[str, Any]] = {
    "reference": {},
    "select_ap": SELECT_AP,
    "log_attenuation": {**SELECT_AP, "input_transform": "log_attenuation"},
    "dual_energy": {**SELECT_AP, "input_transform": "dual_energy"},
    "dual_energy_cosine": {
        **SELECT_AP,
        "input_transform": "dual_energy",
        "lr_scheduler": {"name": "cosine", "warmup_epochs": 1},
    },
    "wedge_profile": {**SELECT_AP, "input_transform": "wedge_profile"},
    "wedge_profile_lr3": {**SELECT_AP, "input_transform": "wedge_profile", "lr": 3.0e-3},
    "wedge_profile_b16": {**SELECT_AP, "input_transform": "wedge_profile", "batch_size": 16},
    "wedge_profile_balanced": {
        **SELECT_AP,
        "input_transform": "wedge_profile",
        "class_balanced_sampler": True,
    },
    "dual_energy_balanced": {**SELECT_AP, "input_transform": "dual_energy", "class_balanced_sampler": True},
}


def run(
    arch: str,
    variants: list[str],
    seeds: list[int],
    *,
    epochs: int | None,
    max_images: int | None,
    eval_images: int,
) -> dict[str, Any]:
    """Train every variant for every seed; validation and evaluation-set macro AP of the selected checkpoint."""
    generation, training = _conf()
    images, metadata = training_data(generation, int(generation["n_images"]))
    eval_x, eval_meta = simulate_evaluation_set(generation, EvaluationSetParams(n_images=eval_images))
    val_rows = np.flatnonzero(metadata["split"].to_numpy() == "val")
    rows = []
    for name in variants:
        for seed in seeds:
            base = deep_merge(training["training"], training[arch]["train_options"])
            overrides: dict[str, Any] = {"seed": seed, "progress_bar": False, "resume": False}
            if epochs is not None:
                overrides["epochs"] = epochs
            if max_images is not None:
                overrides["max_train_images"] = max_images
            params = parse_training_params(deep_merge(deep_merge(base, overrides), VARIANTS[name]))
            start = time.perf_counter()
            result = train_from_params(images, metadata, params, None)
            wall = time.perf_counter() - start
            val_ap, _ = macro_ap(predict_images(result.bundle, images[val_rows], metadata.iloc[val_rows]))
            eval_ap, per_alloy = macro_ap(predict_images(result.bundle, eval_x, eval_meta))
            history = result.history
            row = {
                "variant": name,
                "seed": seed,
                "epochs": len(history),
                "n_train": int(result.summary["n_train_images"]),
                "val_macro_ap": round(val_ap, 4),
                "eval_macro_ap": round(eval_ap, 4),
                "eval_ap": {k: round(v, 4) for k, v in per_alloy.items()},
                "last_train_alloy_acc": round(float(history["train_alloy_acc"].iloc[-1]), 4),
                "wall_s": round(wall, 1),
            }
            logger.info("%s seed %d: val %.3f, eval %.3f (%.0f s)", name, seed, val_ap, eval_ap, wall)
            rows.append(row)
    return {"arch": arch, "rows": rows, "eval_images": len(eval_meta)}


def markdown(results: dict[str, Any]) -> str:
    """Mean +- sd over seeds per variant."""
    lines = [
        f"{results['arch']}: macro AP of the checkpoint selected on val; evaluation set "
        f"{results['eval_images']} images of fresh specimens (reported, not used to choose).",
        "",
        "| variant | seeds | epochs x train images | val macro AP | eval macro AP | AP 2017 / 7075 (eval) | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in results["rows"]:
        by_variant.setdefault(row["variant"], []).append(row)

    def stat(values: list[float]) -> str:
        return f"{np.mean(values):.3f}" + (f" +- {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")

    for name, group in by_variant.items():
        lines.append(
            f"| {name} | {len(group)} | {group[0]['epochs']} x {group[0]['n_train']} | "
            f"{stat([r['val_macro_ap'] for r in group])} | {stat([r['eval_macro_ap'] for r in group])} | "
            f"{stat([r['eval_ap']['2017'] for r in group])} / {stat([r['eval_ap']['7075'] for r in group])} | "
            f"{np.mean([r['wall_s'] for r in group]):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run, print the table, write JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--max-train-images", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--eval-images", type=int, default=3000)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    results = run(
        args.arch,
        args.variants,
        args.seeds,
        epochs=args.epochs,
        max_images=args.max_train_images,
        eval_images=args.eval_images,
    )
    results.update(
        {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "processor": platform.processor() or platform.machine(),
            },
            "epochs": args.epochs,
            "max_train_images": args.max_train_images,
            "total_wall_s": round(time.perf_counter() - start, 1),
        }
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"bench_recipes_{args.arch}{args.tag}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (RESULTS / f"{stem}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
