"""benchmarks/bench_gpu.py runs on a host with only torch, timm, numpy, pandas (+ the package's own light
dependencies): no Kedro, torchjd, xraydb or MLflow is imported, and the torchjd rows say they were skipped;
its torchrun section trains two replicas that end bit-identical."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.subprocesses import run_child

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
BLOCKED = ("kedro", "torchjd", "xraydb", "mlflow", "pandera", "great_expectations", "ray")

RUNNER = """
import importlib.abc, runpy, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not on the GPU host")
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[2], "--device", "cpu", "--quick", "--out", sys.argv[3]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_bench_gpu_quick_cpu_run_without_kedro_torchjd_xraydb(tmp_path: Path) -> None:
    # a few training runs on 2 cores take about 3.5 min: the default 240 s left no margin
    run_child([sys.executable, "-c", RUNNER, ",".join(BLOCKED), str(BENCH), str(tmp_path)], timeout=600)
    results = json.loads((tmp_path / "bench_gpu_cpu_quick.json").read_text())
    assert results["throughput"][0]["trainer_img_per_s"] > 0
    assert [row["method"] for row in results["methods"]] == ["pcgrad"]
    assert any("upgrad: skipped, torchjd" in note for note in results["notes"])
    assert 0.0 <= results["paper"]["test_macro_ap"] <= 1.0
    assert [row["method"] for row in results["ddp_one_process"]] == ["equal", "pcgrad"]  # gloo, one rank
    replicas = results["replicas"]
    assert replicas["backend"] == "gloo" and replicas["ranks"] == 2
    assert [row["method"] for row in replicas["rows"]] == ["equal", "pcgrad", "upgrad", "gradnorm"]
    assert all(row["bit_identical"] for row in replicas["rows"])
    assert results["errors"] == {}
    assert "stand-in" in (tmp_path / "bench_gpu_cpu_quick.md").read_text()
