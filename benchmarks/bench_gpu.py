"""GPU training: the trainer against a bare CUDA loop, data feeding against consumption, gradient methods'
step time, and a short paper-sized resnet18 run to a macro AP.

Sections (each a table in the markdown):

1. throughput: images/s of a bare PyTorch loop (the same ``build_model`` resnet18: timm backbone + heads,
   Adam, weighted loss sum) and of our ``Trainer`` (equal weighting, no gradient clipping so both do the same
   work), bf16 autocast + channels_last on and off (on CUDA; on the CPU both are no-ops: one row). Both
   read the same on-device batches, so this is compute plus the trainer's own per-step cost.
2. feeding: images/s a ``DataLoader`` (0..8 workers, pinned memory on CUDA, copy to the device included)
   and ``DeviceBatches`` (the split kept on the device) deliver, against the trainer's consumption.
3. methods: step time of each gradient method over equal weighting (epochs timed in interleaved pairs).
4. paper: ``train_from_params`` on a paper-sized split (12,000 x 3 x 64 x 64 float16) of a SYNTHETIC
   STAND-IN (Beer-Lambert wedges with made-up attenuation coefficients per alloy; the project's physics
   generator needs xraydb, which a bare GPU host lacks), to the test split's macro average precision.
5. DDP: the data-parallel code path on this device in a process group of one (NCCL on CUDA), equal and
   PCGrad, against the plain trainer: it runs, and what it costs on one device.
6. replicas: ``torchrun --standalone --nproc_per_node=2`` trains resnet18 (BatchNorm: SyncBatchNorm on CUDA)
   data-parallel for each of equal / PCGrad / UPGrad (torchjd, when installed) / GradNorm, and rank 0 then
   alone on the same global batches; are the two replicas bit-identical, and how far from one process? With
   fewer GPUs than ranks both ranks share a GPU over gloo (NCCL refuses two ranks on one device): the
   CUDA code path and the replicas' identity are proven, NCCL with several ranks is not.

Each section runs on its own: one that fails records its traceback under ``errors`` and the others still run;
the JSON and markdown are rewritten after every section, so a run stopped by a time limit keeps what it
measured.

Run on a GPU host that has torch, timm, numpy, pandas, pydantic, pyyaml and tqdm (torchjd optional: without
it the torchjd methods are skipped and the output says so)::

    PYTHONPATH=src python benchmarks/bench_gpu.py            # CUDA, full sizes, < 6 minutes on one H100
    PYTHONPATH=src python benchmarks/bench_gpu.py --device cpu --quick   # the smoke run (< 1 minute)

Writes ``benchmarks/results/bench_gpu[_cpu][_quick].json`` and ``.md`` (``--out`` chooses the folder).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from alloy_mtl.constants import ALLOYS
from alloy_mtl.mtl.device import autocast, memory_format, resolve_device, seed_everything
from alloy_mtl.mtl.loading.datasets import ArrayTaskDataset, fit_target_stats, make_dataloader
from alloy_mtl.mtl.loading.device_batches import DeviceBatches
from alloy_mtl.mtl.losses.task_losses import build_task_losses
from alloy_mtl.mtl.models.multitask import build_model
from alloy_mtl.mtl.recipe import train_from_params
from alloy_mtl.mtl.tasks import parse_tasks
from alloy_mtl.mtl.training.trainer import Trainer

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the sibling benchmark, however this file is started
from bench_training import paired  # noqa: E402 (after the path it is found on)

RESULTS = Path(__file__).parent / "results"
ARCH = "resnet18"
TASK_PARAMS = {
    "alloy": {"kind": "classification", "target": "alloy", "num_outputs": 5, "loss": "cross_entropy"},
    "thickness": {"kind": "regression", "target": "thickness_mm", "loss": "mse"},
    "absorption": {"kind": "regression", "target": "absorption", "loss": "mse"},
}
METHODS = ("uncertainty", "gradnorm", "pcgrad", "upgrad", "mgda")
TORCHJD_METHODS = ("upgrad", "mgda")
REPLICA_METHODS = ("equal", "pcgrad", "upgrad", "gradnorm")
SECTIONS = ("throughput", "feeding", "methods", "paper", "ddp_one_process", "replicas")
#: Made-up effective attenuation (1/cm) per alloy at three tube voltages: a stand-in, not physics data.
STAND_IN_MU = {
    "1050": (0.70, 0.42, 0.30),
    "2017": (0.86, 0.50, 0.34),
    "5083": (0.68, 0.41, 0.295),
    "6082": (0.72, 0.43, 0.305),
    "7075": (0.90, 0.52, 0.35),
}
CLASS_SHARE = (0.35, 0.25, 0.18, 0.13, 0.09)  # long-tailed, as the project's data


def sizes(device: torch.device, quick: bool) -> dict[str, int]:
    """Problem sizes: GPU-sized on CUDA, small on the CPU, tiny with ``quick``."""
    if quick:
        return {"n": 64, "size": 16, "batch": 16, "repeats": 1, "paper_n": 200, "paper_size": 16,
                "paper_epochs": 2, "paper_batch": 32, "replica_n": 48, "replica_size": 16}  # fmt: skip
    if device.type == "cuda":
        return {"n": 8192, "size": 64, "batch": 256, "repeats": 7, "paper_n": 12000, "paper_size": 64,
                "paper_epochs": 12, "paper_batch": 128, "replica_n": 600, "replica_size": 32}  # fmt: skip
    return {"n": 512, "size": 32, "batch": 32, "repeats": 3, "paper_n": 2000, "paper_size": 32,
            "paper_epochs": 3, "paper_batch": 32, "replica_n": 96, "replica_size": 16}  # fmt: skip


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (timing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stand_in_data(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """The synthetic stand-in: multi-energy transmission of an aluminium wedge, -ln(I/I0) style targets."""
    rng = np.random.default_rng(seed)
    alloys = rng.choice(ALLOYS, size=n, p=CLASS_SHARE)
    thickness = rng.uniform(2.0, 20.0, n)  # mm at the thick end
    mu = np.array([STAND_IN_MU[a] for a in alloys])  # (n, 3)
    ramp = np.linspace(0.3, 1.0, size)[None, None, None, :]  # wedge along x
    path_cm = (thickness / 10.0)[:, None, None, None] * ramp
    transmission = np.exp(-mu[:, :, None, None] * path_cm)
    noise = rng.normal(0.0, 0.01, (n, 3, size, size))
    images = np.clip(transmission + noise * np.sqrt(transmission), 1e-3, None).astype(np.float16)
    split = rng.choice(["train", "val", "test"], size=n, p=(0.7, 0.15, 0.15))
    metadata = pd.DataFrame(
        {
            "image_id": [f"img-{i}" for i in range(n)],
            "specimen_id": [f"spec-{i}" for i in range(n)],
            "alloy": alloys,
            "thickness_mm": thickness,
            "absorption": mu[:, 1],
            "split": split,
        }
    )
    return images, metadata


def macro_average_precision(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over the classes present of one-vs-rest average precision (sklearn's step-wise definition)."""
    scores = []
    for k in range(probabilities.shape[1]):
        positive = truth == k
        if not positive.any():
            continue
        order = np.argsort(-probabilities[:, k], kind="stable")
        hits = positive[order]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        scores.append(float(precision[hits].sum() / positive.sum()))
    return float(np.mean(scores))


class Bench:
    """Shared data, tasks and losses of the timing sections."""

    def __init__(self, device: torch.device, size_map: dict[str, int]) -> None:
        self.device = device
        self.sizes = size_map
        n, size = size_map["n"], size_map["size"]
        images, metadata = stand_in_data(n, size)
        self.tasks = parse_tasks(TASK_PARAMS)
        targets = {
            "alloy": np.array([ALLOYS.index(a) for a in metadata["alloy"]]),
            "thickness": metadata["thickness_mm"].to_numpy(),
            "absorption": metadata["absorption"].to_numpy(),
        }
        self.stats = fit_target_stats(targets)
        self.dataset = ArrayTaskDataset(images, targets, target_stats=self.stats)
        self.losses = build_task_losses(self.tasks, {k: self.dataset.targets[k] for k in TASK_PARAMS})
        self.batches = DeviceBatches(self.dataset, size_map["batch"], device, shuffle=True, seed=0)

    def model(self) -> torch.nn.Module:
        seed_everything(0)
        model = build_model(ARCH, 3, self.sizes["size"], self.tasks)
        model.target_scaler.set_stats(self.stats)
        return model

    def bare(self, amp: bool, channels_last: bool) -> Callable[[], float]:
        """One epoch of the plainest loop over the on-device batches; returns seconds."""
        fmt = memory_format(self.device, channels_last)
        model = self.model().to(self.device, memory_format=fmt)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        weights = {t.name: float(t.weight) for t in self.tasks}
        losses = {
            k: v.to(self.device) if isinstance(v, torch.nn.Module) else v for k, v in self.losses.items()
        }

        def epoch() -> float:
            model.train()
            synchronize(self.device)
            start = time.perf_counter()
            for raw, targets, masks in self.batches:
                with autocast(self.device, amp):
                    outputs = model(raw.to(memory_format=fmt))
                loss = sum(weights[k] * losses[k](outputs[k].float(), targets[k], masks[k]) for k in weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            synchronize(self.device)
            return time.perf_counter() - start

        return epoch

    def trainer(self, method: str, amp: bool = True, channels_last: bool = True, loader: Any = None):
        """One more epoch of our Trainer per call (no validation, checkpoints or progress bar)."""
        settings = {
            "epochs": 1, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "grad_clip_norm": 5.0,
            "gradient_method": {"name": method, "diagnostics_every": 0},
            "monitor": {"metric": "train_loss"}, "early_stopping": {"enabled": False}, "restore_best": False,
            "progress_bar": False, "device": str(self.device), "amp": "auto" if amp else False, "channels_last": channels_last,
            "deterministic": False,
        }  # fmt: skip
        trainer = Trainer(self.model(), self.tasks, self.losses, settings)
        data = self.batches if loader is None else loader

        def epoch() -> float:
            trainer.settings = trainer.settings.model_copy(update={"epochs": trainer.epoch + 1})
            synchronize(self.device)
            start = time.perf_counter()
            trainer.fit(data)
            synchronize(self.device)
            return time.perf_counter() - start

        return epoch


def throughput(bench: Bench) -> list[dict[str, Any]]:
    """Section 1: bare loop vs trainer, with and without bf16 + channels_last."""
    n = len(bench.dataset)
    configs = [(True, True), (False, False)] if bench.device.type == "cuda" else [(False, False)]
    rows = []
    for amp, channels_last in configs:
        result = paired(
            bench.bare(amp, channels_last),
            bench.trainer("equal", amp, channels_last),
            bench.sizes["repeats"],
        )
        rows.append(
            {
                "bf16_channels_last": amp and channels_last,
                "bare_img_per_s": n / result["a_epoch_s"],
                "trainer_img_per_s": n / result["b_epoch_s"],
                "trainer_over_bare": 1.0 / result["ratio_b_over_a"],
            }
        )
    return rows


def feeding(bench: Bench, consumption: float, quick: bool) -> list[dict[str, Any]]:
    """Section 2: what each way of feeding delivers (host -> device copy included) vs consumption."""
    device = bench.device
    cpus = os.cpu_count() or 1
    workers = [0] if quick else sorted({0, min(2, cpus), min(4, cpus), min(8, cpus)})
    rows = []

    def measure(iterable: Any) -> float:
        count = 0
        for _ in iterable:  # warm-up epoch (worker start-up, first device copy)
            pass
        synchronize(device)
        start = time.perf_counter()
        for images, targets, _masks in iterable:
            on_device = images.to(device, non_blocking=True)
            _ = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
            count += len(on_device)
        synchronize(device)
        return count / (time.perf_counter() - start)

    for count in workers:
        loader = make_dataloader(
            bench.dataset,
            bench.sizes["batch"],
            shuffle=True,
            num_workers=count,
            persistent_workers=count > 0,
            pin_memory=device.type == "cuda",
        )
        rate = measure(loader)
        rows.append(
            {
                "feeder": f"DataLoader, {count} workers",
                "img_per_s": rate,
                "over_consumption": rate / consumption,
            }
        )
        del loader
    rate = measure(bench.batches)
    rows.append(
        {
            "feeder": "DeviceBatches (split on device)",
            "img_per_s": rate,
            "over_consumption": rate / consumption,
        }
    )
    return rows


def methods(bench: Bench, quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Section 3: step time of each gradient method over equal weighting (amp on where it applies)."""
    notes = []
    try:
        importlib.import_module("torchjd")
        have_torchjd = True
    except ImportError:
        have_torchjd = False
    chosen = ("pcgrad", "upgrad") if quick else METHODS
    equal = bench.trainer("equal")
    rows = []
    for method in chosen:
        if method in TORCHJD_METHODS and not have_torchjd:
            notes.append(f"{method}: skipped, torchjd is not installed on this host")
            continue
        try:
            result = paired(equal, bench.trainer(method), bench.sizes["repeats"])
        except Exception:  # noqa: BLE001 - one method's failure leaves the others' rows
            notes.append(f"{method}: FAILED\n{traceback.format_exc()}")
            continue
        steps = len(bench.batches)
        rows.append(
            {
                "method": method,
                "step_ms": 1e3 * result["b_epoch_s"] / steps,
                "equal_step_ms": 1e3 * result["a_epoch_s"] / steps,
                "ratio_vs_equal": result["ratio_b_over_a"],
            }
        )
    return rows, notes


def paper(device: torch.device, size_map: dict[str, int]) -> dict[str, Any]:
    """Section 4: a short training on the paper-sized stand-in, through ``train_from_params``."""
    images, metadata = stand_in_data(size_map["paper_n"], size_map["paper_size"], seed=1)
    params = {
        "arch": ARCH, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "activation": "relu",
        "epochs": size_map["paper_epochs"], "batch_size": size_map["paper_batch"], "seed": 0,
        "tasks": TASK_PARAMS, "progress_bar": False, "device": str(device), "data_on_device": "auto",
        "early_stopping": {"enabled": False}, "deterministic": device.type == "cpu",
    }  # fmt: skip
    start = time.perf_counter()
    result = train_from_params(images, metadata, params)
    wall = time.perf_counter() - start
    predictions = result.predictions
    truth = np.array([ALLOYS.index(a) for a in predictions["alloy_true"]])
    probabilities = predictions[[f"prob_{a}" for a in ALLOYS]].to_numpy()
    return {
        "data": "synthetic stand-in (made-up attenuation), NOT the project's xraydb generator",
        "images": int(len(metadata)),
        "shape": list(images.shape[1:]),
        "train_images": int(result.summary["n_train_images"]),
        "epochs": int(result.summary["epochs_trained"]),
        "wall_s": wall,
        "train_img_per_s": result.summary["n_train_images"] * result.summary["epochs_trained"] / wall,
        "test_macro_ap": macro_average_precision(truth, probabilities),
        "test_accuracy": float((predictions["alloy_pred"] == predictions["alloy_true"]).mean()),
        "final_val_loss": float(result.history["val_loss"].iloc[-1]),
    }


def ddp_one_process(device: torch.device, size_map: dict[str, int]) -> list[dict[str, Any]]:
    """Section 5: the DDP code path on this device (NCCL on CUDA, gloo on the CPU: DDP wrapper, no_sync,
    SyncBatchNorm on CUDA, summed metrics) in a process group of one, against the plain trainer."""
    images, metadata = stand_in_data(size_map["paper_n"], size_map["paper_size"], seed=3)
    backend = "nccl" if device.type == "cuda" else "gloo"
    rows = []
    for method in ("equal", "pcgrad"):
        params = {
            "arch": ARCH, "epochs": 2, "batch_size": size_map["paper_batch"], "tasks": TASK_PARAMS,
            "progress_bar": False, "device": str(device), "early_stopping": {"enabled": False},
            "gradient_method": {"name": method, "diagnostics_every": 0}, "distributed": False,
        }  # fmt: skip
        plain = train_from_params(images, metadata, params)
        with tempfile.TemporaryDirectory() as folder:
            dist.init_process_group(backend, init_method=f"file://{folder}/store", rank=0, world_size=1)
            try:
                ddp = train_from_params(images, metadata, {**params, "distributed": True})
            finally:
                dist.destroy_process_group()
        plain_s, ddp_s = (float(r.history["epoch_time_s"].iloc[-1]) for r in (plain, ddp))
        rows.append(
            {
                "method": method,
                "backend": backend,
                "plain_epoch_s": plain_s,
                "ddp_epoch_s": ddp_s,
                "ddp_over_plain": ddp_s / plain_s,
                "ddp_val_loss": float(ddp.history["val_loss"].iloc[-1]),
                "plain_val_loss": float(plain.history["val_loss"].iloc[-1]),
            }
        )
    return rows


REPLICA_PER_RANK_BATCH = 8
REPLICA_RANKS = 2


def replica_data(size_map: dict[str, int]) -> tuple[np.ndarray, pd.DataFrame]:
    """The stand-in with a training split that divides into whole global batches (no padded tail)."""
    images, metadata = stand_in_data(size_map["replica_n"], size_map["replica_size"], seed=4)
    n = len(metadata)
    train = (
        (int(0.7 * n) // (REPLICA_RANKS * REPLICA_PER_RANK_BATCH)) * REPLICA_RANKS * REPLICA_PER_RANK_BATCH
    )
    rest = n - train
    metadata["split"] = ["train"] * train + ["val"] * (rest // 2) + ["test"] * (rest - rest // 2)
    return images, metadata


def replica_params(method: str, batch_size: int, device: str) -> dict[str, Any]:
    """Plain SGD in float32 (no autocast), no dropout: the replicas and the one-process reference compare
    like for like."""
    return {
        "arch": ARCH, "optimizer": "sgd", "momentum": 0.9, "lr": 0.01, "weight_decay": 0.0, "epochs": 2,
        "batch_size": batch_size, "seed": 5, "tasks": TASK_PARAMS, "progress_bar": False, "device": device,
        "restore_best": False, "early_stopping": {"enabled": False}, "amp": False,
        "gradient_method": {"name": method, "diagnostics_every": 0}, "distributed": True,
        "model_options": {"dropout": 0.0},  # each rank draws its own dropout masks: none, to compare
    }  # fmt: skip


def replicas_worker(out: Path, device_name: str, quick: bool) -> None:
    """One torchrun rank of section 6: train each method data-parallel, save this rank's weights; rank 0 then
    trains the same runs alone on the global batches (``OUT/<method>-reference.pt``)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = resolve_device(device_name)
    backend = "gloo"
    if device.type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        gpus = torch.cuda.device_count()
        backend = "nccl" if world <= gpus else "gloo"  # NCCL refuses two ranks on one device
        os.environ["LOCAL_RANK"] = str(int(os.environ["LOCAL_RANK"]) % gpus)
    else:
        torch.set_num_threads(1)
    have_torchjd = importlib.util.find_spec("torchjd") is not None
    chosen = [m for m in REPLICA_METHODS if have_torchjd or m not in TORCHJD_METHODS]
    images, metadata = replica_data(sizes(device, quick))
    dist.init_process_group(backend)
    for method in chosen:
        result = train_from_params(
            images, metadata, replica_params(method, REPLICA_PER_RANK_BATCH, device.type)
        )
        torch.save(result.bundle["state_dict"], out / f"{method}-rank{rank}.pt")
    dist.destroy_process_group()
    if rank != 0:
        return
    dist.init_process_group(backend, init_method=f"file://{out / 'reference-store'}", rank=0, world_size=1)
    for method in chosen:
        params = replica_params(method, world * REPLICA_PER_RANK_BATCH, device.type)
        result = train_from_params(images, metadata, params)
        torch.save(result.bundle["state_dict"], out / f"{method}-reference.pt")
    dist.destroy_process_group()
    gpu_count = torch.cuda.device_count() if device.type == "cuda" else 0
    meta = {"backend": backend, "methods": chosen, "ranks": world, "gpus": gpu_count}
    (out / "replicas.json").write_text(json.dumps(meta))


def replicas(device: torch.device, quick: bool) -> dict[str, Any]:
    """Section 6: two torchrun ranks' replicas, compared with each other and with one process."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={REPLICA_RANKS}",
            __file__, "--replicas-worker", str(out), "--device", device.type, *(["--quick"] if quick else []),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"torchrun exited {done.returncode}:\n{done.stderr[-6000:]}")
        meta = json.loads((out / "replicas.json").read_text())
        rows = []
        for method in meta["methods"]:
            first, second, alone = (
                torch.load(out / f"{method}-{name}.pt", map_location="cpu")
                for name in ("rank0", "rank1", "reference")
            )
            floats = [k for k, v in first.items() if v.is_floating_point()]
            rows.append(
                {
                    "method": method,
                    "bit_identical": all(torch.equal(first[k], second[k]) for k in first),
                    "max_abs_rank0_vs_rank1": max(float((first[k] - second[k]).abs().max()) for k in floats),
                    "max_abs_vs_one_process": max(float((first[k] - alone[k]).abs().max()) for k in floats),
                }
            )
    skipped = [m for m in REPLICA_METHODS if m not in meta["methods"]]
    return {**meta, "wall_s": wall, "rows": rows, "skipped": skipped}


def timing_lines(results: dict[str, Any]) -> list[str]:
    """Markdown of sections 1-3 (those that ran)."""
    lines: list[str] = []
    if "throughput" in results:
        lines += [
            "",
            "| bf16 + channels_last | bare loop img/s | trainer img/s | trainer / bare |",
            "|---|---|---|---|",
        ]
        for row in results["throughput"]:
            lines.append(
                f"| {'on' if row['bf16_channels_last'] else 'off'} | {row['bare_img_per_s']:.0f} | "
                f"{row['trainer_img_per_s']:.0f} | {row['trainer_over_bare']:.3f} |"
            )
    if "feeding" in results:
        lines += ["", f"Consumption (trainer, equal): {results['consumption_img_per_s']:.0f} img/s", ""]
        lines += ["| feeder | img/s | / consumption |", "|---|---|---|"]
        for row in results["feeding"]:
            lines.append(f"| {row['feeder']} | {row['img_per_s']:.0f} | {row['over_consumption']:.2f} |")
    if "methods" in results:
        lines += ["", "| method | step ms | equal step ms | ratio vs equal |", "|---|---|---|---|"]
        for row in results["methods"]:
            lines.append(
                f"| {row['method']} | {row['step_ms']:.2f} | {row['equal_step_ms']:.2f} | "
                f"{row['ratio_vs_equal']:.2f} |"
            )
    return lines


def training_lines(results: dict[str, Any]) -> list[str]:
    """Markdown of sections 4-6 (those that ran)."""
    lines: list[str] = []
    if "paper" in results:
        p = results["paper"]
        lines += [
            "",
            f"Paper-sized run ({p['data']}): {p['images']} images {p['shape']}, {p['epochs']} epochs in "
            f"{p['wall_s']:.1f} s ({p['train_img_per_s']:.0f} train img/s), test macro AP "
            f"{p['test_macro_ap']:.3f}, accuracy {p['test_accuracy']:.3f}",
        ]
    if "ddp_one_process" in results:
        lines += [
            "",
            "| DDP, one process | backend | plain epoch s | DDP epoch s | DDP / plain | val loss plain / DDP |",
            "|---|---|---|---|---|---|",
        ]
        for row in results["ddp_one_process"]:
            lines.append(
                f"| {row['method']} | {row['backend']} | {row['plain_epoch_s']:.2f} | {row['ddp_epoch_s']:.2f} | "
                f"{row['ddp_over_plain']:.2f} | {row['plain_val_loss']:.3f} / {row['ddp_val_loss']:.3f} |"
            )
    if "replicas" in results:
        r = results["replicas"]
        lines += [
            "",
            f"Replicas: {r['ranks']} torchrun ranks on {r['gpus']} GPU(s), {r['backend']}, {ARCH} "
            f"(SyncBatchNorm on CUDA), float32 SGD, 2 epochs; {r['wall_s']:.0f} s",
            "",
            "| method | replicas bit-identical | max abs rank 0 - rank 1 | max abs rank 0 - one process |",
            "|---|---|---|---|",
        ]
        for row in r["rows"]:
            lines.append(
                f"| {row['method']} | {'yes' if row['bit_identical'] else 'NO'} | "
                f"{row['max_abs_rank0_vs_rank1']:.1e} | {row['max_abs_vs_one_process']:.1e} |"
            )
        lines += [f"- note: {m}: skipped, torchjd is not installed on this host" for m in r["skipped"]]
        if r["gpus"] == 0:
            lines.append(
                "- note: on the CPU each rank normalises with its own half-batch BatchNorm statistics "
                "(SyncBatchNorm is CUDA-only), so one process on the global batch is not expected to match"
            )
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables (sections that did not run are left out, their errors listed)."""
    env = results.get("environment", {})
    lines = [
        f"# bench_gpu on {env.get('device_name', '?')} ({results['config']['device']}, "
        f"quick={results['config']['quick']})",
        *timing_lines(results),
        *training_lines(results),
    ]
    lines += [f"- note: {note}" for note in results["notes"]]
    for name, error in results["errors"].items():
        lines += ["", f"Section {name} FAILED:", "```", error.strip(), "```"]
    if env:
        lines.append(f"\nWall time {env['wall_s']:.0f} s; torch {env['torch']}, Python {env['python']}.")
    return "\n".join(lines) + "\n"


def output_stem(out: Path, device: torch.device, quick: bool) -> Path:
    """``OUT/bench_gpu[_cpu][_quick]``."""
    return out / ("bench_gpu" + ("_cpu" if device.type != "cuda" else "") + ("_quick" if quick else ""))


def write(results: dict[str, Any], stem: Path) -> None:
    """The JSON and the markdown, rewritten whole."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(results))


def run(
    device_name: str = "auto",
    quick: bool = False,
    out: Path | None = None,
    sections: tuple[str, ...] = SECTIONS,
) -> dict[str, Any]:
    """The chosen sections, each on its own (a failure is recorded, not raised); returns the results dict
    and, with ``out``, rewrites the JSON and markdown there after every section."""
    started = time.perf_counter()
    device = resolve_device(device_name)
    size_map = sizes(device, quick)
    results: dict[str, Any] = {
        "config": {
            "device": str(device),
            "quick": quick,
            "arch": ARCH,
            **size_map,
            "tasks": list(TASK_PARAMS),
        },
        "notes": [],
        "errors": {},
        "section_s": {},
    }
    shared: dict[str, Any] = {}

    def bench() -> Bench:
        if "bench" not in shared:
            shared["bench"] = Bench(device, size_map)
        return shared["bench"]

    def do_throughput() -> None:
        rows = throughput(bench())
        results["throughput"] = rows
        results["consumption_img_per_s"] = rows[0]["trainer_img_per_s"]

    def do_feeding() -> None:
        consumption = results.get("consumption_img_per_s")
        if consumption is None:
            consumption = len(bench().dataset) / bench().trainer("equal")()
            results["consumption_img_per_s"] = consumption
        results["feeding"] = feeding(bench(), consumption, quick)

    def do_methods() -> None:
        results["methods"], notes = methods(bench(), quick)
        results["notes"] += [note for note in notes if "FAILED" not in note]
        failed = [note for note in notes if "FAILED" in note]
        if failed:
            raise RuntimeError("\n".join(failed))

    actions: dict[str, Callable[[], None]] = {
        "throughput": do_throughput,
        "feeding": do_feeding,
        "methods": do_methods,
        "paper": lambda: results.__setitem__("paper", paper(device, size_map)),
        "ddp_one_process": lambda: results.__setitem__("ddp_one_process", ddp_one_process(device, size_map)),
        "replicas": lambda: results.__setitem__("replicas", replicas(device, quick)),
    }
    for name in sections:
        begun = time.perf_counter()
        try:
            actions[name]()
        except Exception:  # noqa: BLE001 - recorded; the other sections still run
            results["errors"][name] = traceback.format_exc()
        results["section_s"][name] = time.perf_counter() - begun
        results["environment"] = {
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or "cpu",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "wall_s": time.perf_counter() - started,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        if out is not None:
            write(results, output_stem(out, device, quick))
    return results


def main() -> None:
    """CLI: run, write JSON + markdown after each section, print the markdown; exit 1 if a section failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cuda:1, cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON and markdown")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--replicas-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replicas_worker is not None:
        replicas_worker(args.replicas_worker, args.device, args.quick)
        return
    results = run(args.device, args.quick, args.out, tuple(args.sections))
    stem = output_stem(args.out, resolve_device(args.device), args.quick)
    sys.stdout.write(markdown(results))
    sys.stdout.write(f"written to {stem}.json|md\n")
    if results["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
