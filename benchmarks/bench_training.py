"""Training-step speed: our Trainer vs a bare PyTorch loop, and each gradient method vs equal weighting.

Everything runs in one process on the same random data (3x32x32 images, batch 32, resnet18 from
``build_model``). Epochs are timed in interleaved pairs (A, B, A, B, ...) so that load from other processes
hits both sides alike; the first epoch of every runner is warm-up and excluded; medians over the repeats.

Run: ``python benchmarks/bench_training.py [--quick]``; writes ``benchmarks/results/bench_training.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alloy_mtl.mtl.device import configure_determinism, seed_everything
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, fit_target_stats, make_dataloader
from alloy_mtl.mtl.losses.task_losses import build_task_losses
from alloy_mtl.mtl.models.multitask import build_model
from alloy_mtl.mtl.optim.optimizers import build_optimizer
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.trainer import Trainer

RESULTS = Path(__file__).parent / "results" / "bench_training.json"
TASK_PARAMS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "cross_entropy"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
    "absorption": {"kind": "regression", "target": "absorption", "loss": "mse"},
}
METHODS = ("uncertainty", "gradnorm", "pcgrad_fast", "pcgrad", "upgrad", "mgda")
ARCH = "resnet18"


def _data(n: int, size: int, batch: int) -> tuple[Any, Any, dict[str, Any]]:
    rng = np.random.default_rng(0)
    images = rng.random((n, 3, size, size)).astype(np.float16)
    targets = {
        "alloy": rng.integers(0, 5, n),
        "thickness": rng.random(n) * 20,
        "absorption": rng.random(n) * 3,
    }
    stats = fit_target_stats(targets)
    dataset = ArrayTaskDataset(images, targets, target_stats=stats)
    loader = make_dataloader(dataset, batch, shuffle=True, seed=0)
    return dataset, loader, stats


#: A model with almost no compute: isolates the trainer's own per-step cost.
TINY = {"arch": "fnn", "fnn_hidden": (16,), "hidden": 16}


def _model(tasks: list, size: int, tiny: bool) -> torch.nn.Module:
    seed_everything(0)
    if tiny:
        kwargs = dict(TINY)
        return build_model(kwargs.pop("arch"), 3, size, tasks, **kwargs)
    return build_model(ARCH, 3, size, tasks)


def _bare_runner(
    tasks: list, losses: dict, loader: Any, size: int, *, lr: float, tiny: bool = False
) -> Callable[[], float]:
    """One epoch of the plainest loop: forward, weighted loss sum, backward, step."""
    model = _model(tasks, size, tiny)
    optimizer = build_optimizer("adam", model.parameters(), lr=lr, weight_decay=1e-4)
    weights = {t.name: t.weight for t in tasks}

    def epoch() -> float:
        model.train()
        start = time.perf_counter()
        for images, targets, masks in loader:
            outputs = model(images)
            loss = sum(weights[k] * losses[k](outputs[k], targets[k], masks[k]) for k in weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    return epoch


def _trainer_runner(
    tasks: list,
    losses: dict,
    loader: Any,
    stats: dict,
    size: int,
    *,
    method: str,
    diagnostics_every: int = 0,
    tiny: bool = False,
) -> Callable[[], float]:
    """One more epoch of our Trainer per call (no validation, no checkpoints, no progress bar)."""
    model = _model(tasks, size, tiny)
    model.target_scaler.set_stats(stats)
    settings = {
        "epochs": 1, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4,
        "gradient_method": {"name": method, "diagnostics_every": diagnostics_every},
        "monitor": {"metric": "train_loss"}, "early_stopping": {"enabled": False}, "restore_best": False,
        "progress_bar": False, "device": "cpu",
    }  # fmt: skip
    trainer = Trainer(model, tasks, losses, settings)

    def epoch() -> float:
        trainer.settings = trainer.settings.model_copy(update={"epochs": trainer.epoch + 1})
        start = time.perf_counter()
        trainer.fit(loader)
        return time.perf_counter() - start

    return epoch


def paired(a: Callable[[], float], b: Callable[[], float], repeats: int) -> dict[str, float]:
    """Warm both up, then time ``repeats`` interleaved epoch pairs; ratio = median of per-pair b/a."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(a())
        times_b.append(b())
    return {
        "a_epoch_s": statistics.median(times_a),
        "b_epoch_s": statistics.median(times_b),
        "ratio_b_over_a": statistics.median(tb / ta for ta, tb in zip(times_a, times_b, strict=True)),
        # best-of-repeats ratio: robust when other processes load the CPU in bursts
        "min_ratio_b_over_a": min(times_b) / min(times_a),
    }


def _forward_backward_split(
    tasks: list, losses: dict, loader: Any, size: int, repeats: int
) -> dict[str, float]:
    """Median forward and backward time of one step (reference for 'one extra backward per task')."""
    seed_everything(0)
    model = build_model(ARCH, 3, size, tasks)
    model.train()
    forward, backward = [], []
    batches = list(loader)[: max(repeats, 2) + 1]
    for i, (images, targets, masks) in enumerate(batches):
        t0 = time.perf_counter()
        outputs = model(images)
        loss = sum(losses[k](outputs[k], targets[k], masks[k]) for k in outputs)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if i:  # first step is warm-up
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    f, b = statistics.median(forward), statistics.median(backward)
    n = len(tasks)
    return {"forward_s": f, "backward_s": b, "expected_exact_ratio": (f + n * b) / (f + b)}


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns the results dict (also what ``__main__`` writes as JSON)."""
    n, size, batch, repeats = (64, 32, 16, 2) if quick else (512, 32, 32, 4)
    methods = ("pcgrad_fast", "pcgrad") if quick else METHODS
    configure_determinism(torch.device("cpu"), True)  # the trainer turns it on; same conditions for the loop
    tasks = parse_tasks(TASK_PARAMS)
    dataset, loader, stats = _data(n, size, batch)
    losses = build_task_losses(tasks, {k: dataset.targets[k] for k in TASK_PARAMS})
    load_start = os.getloadavg()
    started = time.perf_counter()

    bare = _bare_runner(tasks, losses, loader, size, lr=1e-3)
    equal = _trainer_runner(tasks, losses, loader, stats, size, method="equal")
    overhead = paired(bare, equal, repeats)
    results: dict[str, Any] = {
        "config": {
            "arch": ARCH, "images": n, "image_size": size, "channels": 3, "batch_size": batch,
            "steps_per_epoch": len(loader), "repeats": repeats, "quick": quick, "tasks": list(TASK_PARAMS),
        },
        "bare_loop_img_per_s": n / overhead["a_epoch_s"],
        "trainer_equal_img_per_s": n / overhead["b_epoch_s"],
        "trainer_over_bare_throughput": 1.0 / overhead["ratio_b_over_a"],
        "trainer_over_bare_throughput_best_of": 1.0 / overhead["min_ratio_b_over_a"],
        "step_time_ratio_vs_equal": {},
        "step_time_ratio_vs_equal_best_of": {},
        "epoch_s": {"bare": overhead["a_epoch_s"], "equal": overhead["b_epoch_s"]},
    }  # fmt: skip
    tiny = paired(
        _bare_runner(tasks, losses, loader, size, lr=1e-3, tiny=True),
        _trainer_runner(tasks, losses, loader, stats, size, method="equal", tiny=True),
        repeats * 5,
    )
    steps = len(loader)
    overhead_ms = 1e3 * (tiny["b_epoch_s"] - tiny["a_epoch_s"]) / steps
    bare_step_ms = 1e3 * overhead["a_epoch_s"] / steps
    results["trainer_overhead_ms_per_step_tiny_model"] = overhead_ms
    results["tiny_model_epoch_s"] = {"bare": tiny["a_epoch_s"], "trainer": tiny["b_epoch_s"]}
    results["trainer_over_bare_throughput_from_overhead"] = bare_step_ms / (
        bare_step_ms + max(overhead_ms, 0.0)
    )
    diag = paired(
        equal,
        _trainer_runner(tasks, losses, loader, stats, size, method="equal", diagnostics_every=20),
        repeats,
    )
    results["diagnostics_every_20_ratio_vs_equal"] = diag["ratio_b_over_a"]
    results["diagnostics_every_20_ratio_vs_equal_best_of"] = diag["min_ratio_b_over_a"]
    for method in methods:
        timed = paired(equal, _trainer_runner(tasks, losses, loader, stats, size, method=method), repeats)
        results["step_time_ratio_vs_equal"][method] = timed["ratio_b_over_a"]
        results["step_time_ratio_vs_equal_best_of"][method] = timed["min_ratio_b_over_a"]
        results["epoch_s"][method] = timed["b_epoch_s"]
    results["forward_backward"] = _forward_backward_split(tasks, losses, loader, size, repeats=5)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["environment"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return results


def main() -> None:
    """CLI: run, print and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = run(quick=args.quick)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
