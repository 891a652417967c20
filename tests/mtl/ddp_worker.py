"""torchrun worker of ``test_ddp.py``: trains the same tiny run data-parallel and as a one-process reference.

``torchrun --standalone --nproc_per_node=2 tests/mtl/ddp_worker.py OUT`` trains, for each gradient method,
2 epochs on 2 gloo ranks (4 images per rank and step) with checkpoints, and writes each rank's final weights
to ``OUT/<method>-rank<r>.pt`` and every checkpoint write to ``OUT/writes-rank<r>.txt``. Then rank 0 alone,
in a process group of one, trains the same run on the same global batches (8 images per step) and writes
``OUT/<method>-reference.pt``, and ``OUT/timing.json`` holds the wall times. Before that, both ranks
resume the equal run after one epoch (``OUT/resumed-rank<r>.pt``), train once with early stopping due
after the first epoch without improvement and once into divergence; ``OUT/stops-rank<r>.json`` records
the epochs each rank trained and whether it raised.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from alloy_mtl.constants import ALLOYS
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.training import checkpoint_callback as checkpointing
from alloy_mtl.mtl.training.meter import TrainingDivergedError

METHODS = ("equal", "pcgrad", "upgrad", "gradnorm", "uncertainty")
PER_RANK_BATCH = 4

TASKS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "cross_entropy"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
    "absorption": {"kind": "regression", "target": "absorption", "loss": "mse"},
}


def data(n_train: int = 32, n_eval: int = 10) -> tuple[np.ndarray, pd.DataFrame]:
    """Every label present: a masked mean over a rank's batch is then exactly half the global batch's."""
    rng = np.random.default_rng(0)
    rows = []
    for split, count in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        for i in range(count):
            rows.append(
                {
                    "image_id": f"{split}-{i}",
                    "specimen_id": f"{split}-{i}",
                    "alloy": ALLOYS[i % 5],
                    "thickness_mm": 1.0 + (i % 7),
                    "absorption": 0.5 + 0.1 * (i % 5),
                    "split": split,
                }
            )
    metadata = pd.DataFrame(rows)
    images = (0.2 + rng.random((len(metadata), 3, 8, 8))).astype(np.float16)
    return images, metadata


def params(method: str, batch_size: int, **overrides) -> dict:
    base = {
        "arch": "fnn",
        "optimizer": "sgd",
        "lr": 0.05,
        "weight_decay": 0.0,
        "activation": "relu",
        "epochs": 2,
        "batch_size": batch_size,
        "seed": 5,
        "tasks": TASKS,
        "progress_bar": False,
        "restore_best": False,
        "early_stopping": {"enabled": False},
        "gradient_method": {"name": method, "diagnostics_every": 2},
        "distributed": True,
        "device": "cpu",
        "model_options": {"fnn_pool_size": 8, "fnn_hidden": [16], "hidden": 8, "dropout": 0.0},
    }
    return base | overrides


def main(out: Path) -> None:
    rank = int(os.environ["RANK"])
    log = out / f"writes-rank{rank}.txt"
    log.touch()
    original = checkpointing.save_checkpoint

    def recording_save(state, path):  # every checkpoint write, by rank
        with log.open("a") as handle:
            handle.write(f"{path}\n")
        return original(state, path)

    checkpointing.save_checkpoint = recording_save
    images, metadata = data()
    timing = {}
    for method in METHODS:
        start = time.perf_counter()
        result = train_from_params(images, metadata, params(method, PER_RANK_BATCH), out / f"ckpt-{method}")
        timing[f"ddp_{method}_s"] = time.perf_counter() - start
        torch.save(result.bundle["state_dict"], out / f"{method}-rank{rank}.pt")
    # resume: one epoch, then on to the second from its checkpoint, as the uninterrupted equal run
    train_from_params(images, metadata, params("equal", PER_RANK_BATCH, epochs=1), out / "ckpt-resume")
    resumed = train_from_params(
        images, metadata, params("equal", PER_RANK_BATCH, resume=True), out / "ckpt-resume"
    )
    torch.save(resumed.bundle["state_dict"], out / f"resumed-rank{rank}.pt")
    stopping = {"enabled": True, "patience": 1, "min_epochs": 1}
    # rank 1's val shard is other images than rank 0's: only summed metrics give both the same decision
    monitor = {"metric": "val_alloy_ap", "mode": "max"}  # AP: gathered scores, not summed
    early = train_from_params(
        images,
        metadata,
        params("equal", PER_RANK_BATCH, epochs=6, lr=0.5, early_stopping=stopping, monitor=monitor),
    )
    try:
        train_from_params(
            images, metadata, params("pcgrad", PER_RANK_BATCH, epochs=3, lr=1.0e12, grad_clip_norm=None)
        )
        diverged = False
    except TrainingDivergedError:
        diverged = True
    stops = {
        "early_stopping_epochs": len(early.history),
        "val_alloy_ap": early.history["val_alloy_ap"].tolist(),
        "lr": early.history["lr"].tolist(),
        "diverged": diverged,
    }
    (out / f"stops-rank{rank}.json").write_text(json.dumps(stops))
    dist.destroy_process_group()
    if rank != 0:
        return
    dist.init_process_group("gloo", init_method=f"file://{out / 'reference-store'}", rank=0, world_size=1)
    for method in METHODS:
        start = time.perf_counter()
        result = train_from_params(images, metadata, params(method, 2 * PER_RANK_BATCH), None)
        timing[f"single_{method}_s"] = time.perf_counter() - start
        torch.save(result.bundle["state_dict"], out / f"{method}-reference.pt")
    dist.destroy_process_group()
    (out / "timing.json").write_text(json.dumps(timing, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]))
