"""Learning curves: macro AP on a fixed large evaluation set versus training images and epochs.

Answers, per architecture, whether the alloy task is data-limited (more images help), compute-limited (more
epochs help) or representation-limited (neither does, far below the physics limit). Training data are
simulated with the project's default generator (long tail, every nuisance on), split by specimen as the
pipeline does; the evaluation set is the pipeline's own large balanced set of fresh specimens. Every setting
but the epochs is the project's default recipe for the architecture (``conf/base``).

    python benchmarks/bench_learning.py [--quick] [--archs fnn resnet18] [--sizes 1500 6000 24000]

Writes ``benchmarks/results/bench_learning.json``, ``bench_learning.md`` and ``bench_learning.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import average_precision_score

from alloy_mtl.data.split import split_dataset
from alloy_mtl.evaluation.evaluation_set import simulate_evaluation_set
from alloy_mtl.evaluation.params import EvaluationSetParams
from alloy_mtl.mtl.labelled_prediction import predict_images, predictions_frame, task_targets
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, make_dataloader
from alloy_mtl.mtl.params import parse_training_params
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.mtl.training.predict import predict
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ALLOYS = ("1050", "2017", "5083", "6082", "7075")
EPOCHS = {"fnn": 60, "resnet18": 10, "resnet34": 10, "resnet50": 10, "efficientnet_b0": 10, "vgg16": 10}

logger = logging.getLogger("bench_learning")


def _conf() -> tuple[dict[str, Any], dict[str, Any]]:
    base = ROOT / "conf" / "base"
    generation = yaml.safe_load((base / "parameters_data_processing.yml").read_text())["generation"]
    return generation, yaml.safe_load((base / "parameters_training.yml").read_text())


def macro_ap(predictions: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """Macro and per-alloy one-vs-rest AP of a predictions table."""
    per = {
        a: float(average_precision_score(predictions["alloy_true"] == a, predictions[f"prob_{a}"]))
        for a in ALLOYS
    }
    return float(np.mean(list(per.values()))), per


class EvaluationSetCurve(Callback):
    """Macro AP on the evaluation set after the chosen epochs (the model's current weights, not the best)."""

    def __init__(self, images: np.ndarray, metadata: pd.DataFrame, tasks: list, at: set[int]) -> None:
        self.at, self.tasks, self.metadata = at, tasks, metadata
        self.loader = make_dataloader(ArrayTaskDataset(images, task_targets(metadata, tasks)), 512)
        self.points: list[dict[str, float]] = []

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        """Predict the evaluation set at the chosen epochs."""
        if epoch not in self.at:
            return
        outputs = predict(trainer.model, self.loader, self.tasks, device=trainer.device)
        value, _ = macro_ap(predictions_frame(outputs, self.metadata, self.tasks))
        self.points.append({"epoch": epoch, "macro_ap": value, "val_alloy_acc": metrics.get("val_alloy_acc")})
        trainer.model.train()


def training_data(generation: dict[str, Any], n_images: int) -> tuple[np.ndarray, pd.DataFrame]:
    """The default generator at ``n_images``, split by specimen like the pipeline."""
    config = SimulationConfig.from_params({**generation, "n_images": n_images})
    images, metadata = simulate_dataset(config)
    metadata["split"] = split_dataset(
        metadata, {"train": 0.7, "val": 0.15, "test": 0.15}, {"train": 1, "val": 2, "test": 2}, 3, seed=42
    ).to_numpy()
    return images, metadata


def run(
    archs: list[str], sizes: list[int], epochs: dict[str, int], eval_images: int, cnn_max: int | None = None
) -> dict[str, Any]:
    """Train every architecture on every size (CNNs up to ``cnn_max`` images); record the evaluation-set
    macro AP along the epochs."""
    generation, training = _conf()
    settings = EvaluationSetParams(n_images=eval_images)
    eval_x, eval_meta = simulate_evaluation_set(generation, settings)
    rows = []
    for n_images in sizes:
        images, metadata = training_data(generation, n_images)
        for arch in archs:
            if arch != "fnn" and cnn_max is not None and n_images > cnn_max:
                continue
            params = {
                **training["training"],
                **training[arch]["train_options"],
                "epochs": epochs[arch],
                "progress_bar": False,
                "early_stopping": {"enabled": False},
            }
            marks = sorted({max(1, epochs[arch] // 4), epochs[arch] // 2, epochs[arch]})
            parsed = parse_training_params(params)
            curve = EvaluationSetCurve(eval_x, eval_meta, parsed.task_specs, set(marks))
            start = time.perf_counter()
            result = train_from_params(images, metadata, parsed, None, callbacks=[curve])
            wall = time.perf_counter() - start
            best, per_alloy = macro_ap(predict_images(result.bundle, eval_x, eval_meta))
            row = {
                "arch": arch,
                "n_images": n_images,
                "n_train": int(result.summary["n_train_images"]),
                "epochs": epochs[arch],
                "wall_s": round(wall, 1),
                "curve": curve.points,
                "best_checkpoint_macro_ap": round(best, 4),
                "ap": {k: round(v, 4) for k, v in per_alloy.items()},
            }
            logger.info("%s n=%d: macro AP %.3f (%.0f s)", arch, n_images, best, wall)
            rows.append(row)
    return {"rows": rows, "eval_images": len(eval_meta)}


def markdown(results: dict[str, Any]) -> str:
    """The results-page table (docs/results.md): best-checkpoint macro AP and the curve along the epochs."""
    lines = [
        f"Evaluation set: {results['eval_images']} images of fresh specimens, balanced. "
        "Curve: macro AP of the current weights at 1/4, 1/2 and all epochs; best: the checkpoint selected on val.",
        "",
        "| arch | images (train) | epochs | macro AP along epochs | best-checkpoint macro AP | AP 5083 / 6082 | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        curve = " -> ".join(f"{p['macro_ap']:.3f}@{p['epoch']}" for p in row["curve"])
        lines.append(
            f"| {row['arch']} | {row['n_images']} ({row['n_train']}) | {row['epochs']} | {curve} | "
            f"{row['best_checkpoint_macro_ap']:.3f} | {row['ap']['5083']:.3f} / {row['ap']['6082']:.3f} | "
            f"{row['wall_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Macro AP versus training images (best checkpoint), one line per architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(results["rows"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for arch, group in frame.groupby("arch"):
        ax.plot(group["n_images"], group["best_checkpoint_macro_ap"], marker="o", label=arch)
    ax.set_xscale("log")
    ax.set_xlabel("generated images (70% train)")
    ax.set_ylabel("macro AP, evaluation set")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run, print the table, write JSON, markdown and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and epochs (smoke run)")
    parser.add_argument("--archs", nargs="+", default=["fnn", "resnet18"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1500, 6000, 24000])
    parser.add_argument("--eval-images", type=int, default=3000)
    parser.add_argument(
        "--cnn-max", type=int, default=6000, help="largest training set for the CNNs (CPU time)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    epochs = {a: EPOCHS[a] for a in args.archs}
    sizes = args.sizes
    if args.quick:
        epochs, sizes, args.eval_images = {a: 2 for a in args.archs}, [300], 300
    start = time.perf_counter()
    results = run(args.archs, sizes, epochs, args.eval_images, args.cnn_max)
    results.update(
        {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "processor": platform.processor() or platform.machine(),
            },
            "quick": args.quick,
            "total_wall_s": round(time.perf_counter() - start, 1),
        }
    )
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bench_learning{suffix}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (RESULTS / f"bench_learning{suffix}.md").write_text(table)
    plot(results, RESULTS / f"bench_learning{suffix}.png")
    print(table)


if __name__ == "__main__":
    main()
