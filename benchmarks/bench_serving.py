"""Benchmark of the served model: latency of one radiograph and throughput of 256, over HTTP and in process.

The model of ``--bundle`` (default: the FNN of a finished ``train_all``, ``data/06_models/fnn/model.pt``) is
logged as train_all logs it (the pyfunc from code, into a temporary sqlite MLflow), served with
``mlflow models serve --env-manager local`` and posted ``--requests`` single-image requests (p50 / p95 / max
latency, client-side wall time including JSON encoding) and ``--batches`` requests of 256 images (images per
second). In process: the same logged model's ``predict`` (what folder inference calls), same inputs. Images are
fresh simulated radiographs at the model's training size.

Run: ``python benchmarks/bench_serving.py [--bundle data/06_models/fnn/model.pt] [--requests 200]`` ->
benchmarks/results/bench_serving{tag}.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient

from alloy_mtl.datasets import TorchBundleDataset
from alloy_mtl.mtl.models.multitask import load_model
from alloy_mtl.physics.simulator import SimulationConfig, simulate_dataset
from alloy_mtl.tracking.model_logging import log_bundle_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
BATCH = 256


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, images: np.ndarray) -> float:
    payload = json.dumps({"inputs": images.tolist()}).encode()
    start = time.perf_counter()
    request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        json.loads(response.read())
    return time.perf_counter() - start


def _latency(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.median(ms)), "p95_ms": float(np.quantile(ms, 0.95)), "max_ms": float(ms.max())}


def _wait(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mlflow models serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(1)


def measure(bundle_path: Path, n_requests: int, n_batches: int) -> dict[str, Any]:
    """Latency and throughput of one bundle's served and in-process model (see the module docstring)."""
    bundle = TorchBundleDataset(filepath=str(bundle_path)).load()
    size, channels = int(bundle["image_size"]), int(bundle["in_chans"])
    images, _ = simulate_dataset(
        SimulationConfig(seed=777, n_images=BATCH, image_size=size, imbalance_ratio=1.0)
    )
    images = images[:BATCH, :channels]
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        experiment = client.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
        run_id = client.create_run(experiment, run_name="bench_serving").info.run_id
        info = log_bundle_model(bundle, run_id)
        model = mlflow.pyfunc.load_model(info.model_uri)
        model.predict(images[:1])  # warm-up
        single: list[float] = []
        for i in range(n_requests):
            start = time.perf_counter()
            model.predict(images[i % BATCH : i % BATCH + 1])
            single.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(n_batches):
            model.predict(images)
        in_process = {
            **_latency(single),
            "images_per_s_256": n_batches * BATCH / (time.perf_counter() - start),
        }

        port, log_path = _free_port(), root / "serve.log"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env |= {"MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
        # the server starts uvicorn by name: this interpreter's environment must come first on PATH
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            info.model_uri,
            "--env-manager",
            "local",
        ]
        with log_path.open("w") as log:
            server = subprocess.Popen(
                [*command, "-h", "127.0.0.1", "-p", str(port)],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            base = f"http://127.0.0.1:{port}"
            try:
                _wait(base, server, log_path)
                url = f"{base}/invocations"
                _post(url, images[:1])  # warm-up
                served_single = [_post(url, images[i % BATCH : i % BATCH + 1]) for i in range(n_requests)]
                batch_seconds = [_post(url, images) for _ in range(n_batches)]
            finally:
                if server.poll() is None:
                    os.killpg(server.pid, signal.SIGTERM)
                    server.wait(timeout=30)
        served = {**_latency(served_single), "images_per_s_256": n_batches * BATCH / sum(batch_seconds)}
    return {
        "bundle": str(bundle_path),
        "arch": bundle["arch"],
        "image_size": size,
        "torch_threads": torch.get_num_threads(),
        "ood_fitted": bool(load_model(bundle).ood.fitted),
        "served": served,
        "in_process": in_process,
    }


def _markdown(result: dict[str, Any], command: str) -> str:
    rows = [
        f"| {where} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} | {r['images_per_s_256']:.0f} |"
        for where, r in (
            ("mlflow models serve (HTTP, JSON)", result["served"]),
            ("in process", result["in_process"]),
        )
    ]
    return "\n".join(
        [
            "# Serving latency and throughput",
            "",
            f"`{command}` on {platform.machine()} ({os.cpu_count()} cores), {result['arch']} at "
            f"{result['image_size']} px, input guards included, unknown-material score "
            + (
                "included."
                if result["ood_fitted"]
                else "not fitted in this bundle (trained before it existed)."
            ),
            "",
            "| where | one image p50 (ms) | p95 (ms) | max (ms) | images/s in requests of 256 |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "data" / "06_models" / "fnn" / "model.pt")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    result = measure(args.bundle, args.requests, args.batches)
    command = f"python benchmarks/bench_serving.py --requests {args.requests} --batches {args.batches}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"bench_serving{args.tag}.json").write_text(json.dumps(result, indent=2))
    (RESULTS_DIR / f"bench_serving{args.tag}.md").write_text(_markdown(result, command))


if __name__ == "__main__":
    main()
