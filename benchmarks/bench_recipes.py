"""Training recipes compared at equal compute: which option earns its place in the CPU default.

Every variant trains one architecture on the default generated data (``conf/base``, long tail, every nuisance
on) with the same number of image passes, overriding a few training settings of the default recipe. The
choice between variants is made on the validation split (macro AP of the selected checkpoint); the large
evaluation set of fresh specimens is reported beside it and never used to choose.

    python benchmarks/bench_recipes.py [--archs resnet18 fnn] [--variants default val_loss_neg_log ...]
        [--seeds 42 43 44] [--epochs N] [--max-train-images N] [--tag _name] [--jobs 2]

Writes ``benchmarks/results/bench_recipes<tag>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, r2_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_learning import RESULTS, _conf, macro_ap, training_data  # noqa: E402

from alloy_mtl.evaluation.evaluation_set import simulate_evaluation_set  # noqa: E402
from alloy_mtl.evaluation.params import EvaluationSetParams  # noqa: E402
from alloy_mtl.mtl.labelled_prediction import predict_images  # noqa: E402
from alloy_mtl.mtl.params import deep_merge, parse_training_params  # noqa: E402
from alloy_mtl.mtl.recipe import train_from_params  # noqa: E402

logger = logging.getLogger("bench_recipes")

VAL_LOSS = {"monitor": {"metric": "val_loss", "mode": "min"}}
VAL_AP = {"monitor": {"metric": "val_alloy_ap", "mode": "max"}}
#: Named overrides of the default recipe (``conf/base``); each names its checkpoint selection and input.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "val_loss_neg_log": {**VAL_LOSS, "input_transform": "neg_log"},  # the reference study's choices
    "val_ap_neg_log": {**VAL_AP, "input_transform": "neg_log"},
    "val_ap_log_attenuation": {**VAL_AP, "input_transform": "log_attenuation"},
    "val_ap_dual_energy": {**VAL_AP, "input_transform": "dual_energy"},
    "val_ap_dual_energy_cosine": {
        **VAL_AP,
        "input_transform": "dual_energy",
        "lr_scheduler": {"name": "cosine", "warmup_epochs": 1},
    },
    "val_ap_wedge_profile": {**VAL_AP, "input_transform": "wedge_profile"},
    "val_ap_wedge_profile_lr3": {**VAL_AP, "input_transform": "wedge_profile", "lr": 3.0e-3},
    "val_ap_wedge_profile_b16": {**VAL_AP, "input_transform": "wedge_profile", "batch_size": 16},
    "val_ap_wedge_profile_balanced": {
        **VAL_AP,
        "input_transform": "wedge_profile",
        "class_balanced_sampler": True,
    },
    "val_ap_wedge_profile_balanced_b16": {
        **VAL_AP,
        "input_transform": "wedge_profile",
        "class_balanced_sampler": True,
        "batch_size": 16,
    },
    "val_ap_wedge_profile_balanced_16px_40_epochs": {
        **VAL_AP,
        "input_transform": "wedge_profile",
        "class_balanced_sampler": True,
        "image_size": 16,
        "epochs": 40,
    },
    # subnormal floats kept (the trainer flushes them on a CPU by default)
    "keep_denormals": {"flush_denormal": False},
    "adam_lr1e-3": {"optimizer": "adam", "lr": 1.0e-3},
    "adam_lr3e-3": {"optimizer": "adam", "lr": 3.0e-3},
    "adam_lr1e-3_channels_last": {"optimizer": "adam", "lr": 1.0e-3, "channels_last": True},
    "adam_lr3e-3_channels_last": {"optimizer": "adam", "lr": 3.0e-3, "channels_last": True},
    "lr1e-3": {"lr": 1.0e-3},
    "b16": {"batch_size": 16},
    "bn": {"model_options": {"vgg_batch_norm": True}},
    "bn_lr1e-3": {"model_options": {"vgg_batch_norm": True}, "lr": 1.0e-3},
    # Smith's one-cycle policy set every step (warm-up to the peak lr over 30% of the steps, cosine down)
    **{
        f"one_cycle_lr{lr}": {"lr_scheduler": {"name": "one_cycle"}, "lr": float(lr)}
        for lr in ("3e-4", "5e-4", "1e-3", "2e-3", "3e-3", "1e-2", "3e-2", "5e-2")
    },
    "one_cycle": {"lr_scheduler": {"name": "one_cycle"}},
    # a moving average of the weights, validated and delivered (timm's ModelEmaV3)
    "ema": {"ema": {"enabled": True}},
    "ema_lr1e-3": {"ema": {"enabled": True}, "lr": 1.0e-3},
    # BatchNorm statistics recomputed from 10 training batches before each validation
    "precise_bn": {"precise_bn": {"enabled": True}},
    "bf16_precise_bn": {"amp": True, "precise_bn": {"enabled": True}},
    # bf16 autocast on the CPU (AMX / AVX512-BF16 kernels)
    "bf16": {"amp": True},
    **{
        f"bf16_one_cycle_lr{lr}": {"amp": True, "lr_scheduler": {"name": "one_cycle"}, "lr": float(lr)}
        for lr in ("5e-4", "1e-3", "2e-3")
    },
    **{
        f"bf16_ema_{epochs}_epochs": {"amp": True, "ema": {"enabled": True}, "epochs": epochs}
        for epochs in (5, 6, 8, 12, 14)
    },
    "bf16_channels_last": {"amp": True, "channels_last": True},
    "bf16_b16": {"amp": True, "batch_size": 16},
    "bf16_b16_lr1e-4": {"amp": True, "batch_size": 16, "lr": 1.0e-4},
    "val_ap_wedge_profile_balanced_16px_all_images": {
        **VAL_AP,
        "input_transform": "wedge_profile",
        "class_balanced_sampler": True,
        "image_size": 16,
        "max_train_images": None,
    },
}


def train_variant(
    data: tuple[np.ndarray, Any],
    evaluation: tuple[np.ndarray, Any],
    training: dict[str, Any],
    *,
    arch: str,
    name: str,
    seed: int,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """One run: the architecture's default recipe with ``overrides`` and the variant laid over it."""
    images, metadata = data
    base = deep_merge(training["training"], training[arch]["train_options"])
    settings = {"seed": seed, "progress_bar": False, "resume": False, **overrides}
    params = parse_training_params(deep_merge(deep_merge(base, settings), VARIANTS[name]))
    start = time.perf_counter()
    result = train_from_params(images, metadata, params, None)
    wall = time.perf_counter() - start
    val_rows = np.flatnonzero(metadata["split"].to_numpy() == "val")
    val_ap, _ = macro_ap(predict_images(result.bundle, images[val_rows], metadata.iloc[val_rows]))
    predictions = predict_images(result.bundle, *evaluation)
    eval_ap, per_alloy = macro_ap(predictions)
    logger.info("%s %s seed %d: val %.3f, eval %.3f (%.0f s)", arch, name, seed, val_ap, eval_ap, wall)
    return {
        "arch": arch,
        "variant": name,
        "seed": seed,
        "epochs": len(result.history),
        "n_train": int(result.summary["n_train_images"]),
        "val_macro_ap": round(val_ap, 4),
        "eval_macro_ap": round(eval_ap, 4),
        "eval_ap": {k: round(v, 4) for k, v in per_alloy.items()},
        "eval_balanced_acc": round(
            float(balanced_accuracy_score(predictions["alloy_true"], predictions["alloy_pred"])), 4
        ),
        "eval_r2": {
            target: round(float(r2_score(predictions[f"{target}_true"], predictions[f"{target}_pred"])), 4)
            for target in ("thickness_mm", "absorption")
            if f"{target}_pred" in predictions
        },
        "last_train_alloy_acc": round(float(result.history["train_alloy_acc"].iloc[-1]), 4),
        # the schedule and early stopping do not look ahead, so a run of k epochs is this run's first k:
        # the validation curve prices every shorter budget
        "val_alloy_ap_by_epoch": [round(float(v), 4) for v in result.history["val_alloy_ap"]],
        "epoch_time_s": [round(float(v), 2) for v in result.history["epoch_time_s"]],
        "wall_s": round(wall, 1),
    }


@functools.cache
def _inputs(eval_images: int) -> tuple[dict[str, Any], tuple[np.ndarray, Any], tuple[np.ndarray, Any]]:
    generation, training = _conf()
    data = training_data(generation, int(generation["n_images"]))
    evaluation = simulate_evaluation_set(generation, EvaluationSetParams(n_images=eval_images))
    return training, data, evaluation


def _one(
    job: tuple[str, str, int], overrides: dict[str, Any], eval_images: int, threads: int | None
) -> dict[str, Any]:
    if threads is not None:
        torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    training, data, evaluation = _inputs(eval_images)
    arch, name, seed = job
    return train_variant(data, evaluation, training, arch=arch, name=name, seed=seed, overrides=overrides)


def run(
    archs: list[str],
    variants: list[str],
    seeds: list[int],
    overrides: dict[str, Any],
    *,
    eval_images: int,
    jobs: int = 1,
) -> dict[str, Any]:
    """Every architecture x variant x seed on the default data; macro AP of the checkpoint selected on val.

    ``jobs`` > 1 trains that many runs at once in separate processes of one thread each (a run's result does
    not depend on it: every run is seeded and deterministic on a CPU).
    """
    grid = [(arch, name, seed) for arch in archs for name in variants for seed in seeds]
    if jobs <= 1:
        rows = [_one(job, overrides, eval_images, None) for job in grid]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            rows = list(pool.map(_one, grid, *zip(*[(overrides, eval_images, 1)] * len(grid), strict=True)))
    return {"rows": rows, "eval_images": eval_images, "overrides": overrides}


def markdown(results: dict[str, Any]) -> str:
    """Mean +- sd over seeds per architecture and variant."""
    lines = [
        "Macro AP of the checkpoint selected on val (the choice); evaluation set: "
        f"{results['eval_images']} images of fresh specimens (reported, never used to choose).",
        "",
        "| arch | variant | seeds | epochs x train images | val macro AP | eval macro AP | eval AP 2017 / 7075 "
        "| eval balanced acc | eval R2 thickness / absorption | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in results["rows"]:
        groups.setdefault((row["arch"], row["variant"]), []).append(row)

    def stat(values: list[float]) -> str:
        return f"{np.mean(values):.3f}" + (f" +- {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")

    for (arch, name), group in groups.items():
        lines.append(
            f"| {arch} | {name} | {len(group)} | {group[0]['epochs']} x {group[0]['n_train']} | "
            f"{stat([r['val_macro_ap'] for r in group])} | {stat([r['eval_macro_ap'] for r in group])} | "
            f"{stat([r['eval_ap']['2017'] for r in group])} / {stat([r['eval_ap']['7075'] for r in group])} | "
            f"{stat([r.get('eval_balanced_acc', np.nan) for r in group])} | "
            f"{stat([r.get('eval_r2', {}).get('thickness_mm', np.nan) for r in group])} / "
            f"{stat([r.get('eval_r2', {}).get('absorption', np.nan) for r in group])} | "
            f"{np.mean([r['wall_s'] for r in group]):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run, print the table, write JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18"])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["val_loss_neg_log", "val_ap_neg_log", "default"],
        choices=list(VARIANTS),
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--max-train-images", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--eval-images", type=int, default=3000)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, one thread each")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.max_train_images is not None:
        overrides["max_train_images"] = args.max_train_images
    results = run(
        args.archs, args.variants, args.seeds, overrides, eval_images=args.eval_images, jobs=args.jobs
    )
    results.update(
        {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "processor": platform.processor() or platform.machine(),
            },
            "total_wall_s": round(time.perf_counter() - start, 1),
        }
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"bench_recipes{args.tag}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (RESULTS / f"{stem}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
