"""The default ``kedro run`` runner: independent nodes at once, costliest first, cores shared out."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.utils import load_obj

from alloy_mtl.cli import DEFAULT_RUNNER, run
from alloy_mtl.runner import (
    ModelParallelRunner,
    PriorityThreadExecutor,
    available_cores,
    default_workers,
    node_priority,
)


def test_priority_tags_are_read_and_untagged_nodes_get_zero():
    assert node_priority({"training", "priority_7", "priority_2"}) == 7
    assert node_priority({"training", "priority_x", "my_priority_3"}) == 0
    assert node_priority(()) == 0


def test_waiting_tasks_start_by_priority_then_in_submission_order():
    started: list[str] = []
    gate = threading.Event()
    executor = PriorityThreadExecutor(1, priority=lambda fn: getattr(fn, "priority", 0))

    def task(name: str, priority: int):
        def body() -> str:
            if name == "blocker":
                gate.wait(5)
            started.append(name)
            return name

        body.priority = priority
        return body

    with executor:
        futures = [executor.submit(task("blocker", 0))]
        time.sleep(0.05)  # the one worker is busy: the rest wait in the queue
        for name, priority in [("low", 0), ("high", 5), ("mid", 2), ("low2", 0), ("high2", 5)]:
            futures.append(executor.submit(task(name, priority)))
        gate.set()
    assert started == ["blocker", "high", "high2", "mid", "low", "low2"]
    assert [f.result() for f in futures][0] == "blocker"


def test_a_failed_task_reaches_its_future_and_waiting_ones_never_start_after_a_failure():
    started: list[int] = []
    gate = threading.Event()

    def slow() -> None:
        gate.wait(5)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with PriorityThreadExecutor(1, priority=lambda fn: 0) as executor:
            failing = executor.submit(slow)
            waiting = [executor.submit(started.append, i) for i in range(3)]
            gate.set()
            failing.result(5)
    assert started == [] and all(f.cancelled() for f in waiting)


def test_the_runner_shares_the_cores_and_restores_torchs_thread_count():
    assert default_workers(cores=2, cuda=False) == 2
    assert default_workers(cores=32, cuda=False) == 6
    assert default_workers(cores=16, cuda=True) == 1
    runner = ModelParallelRunner(max_workers=1)
    assert runner.threads_per_worker == available_cores()
    assert ModelParallelRunner(max_workers=2, threads_per_worker=3).threads_per_worker == 3
    with pytest.raises(ValueError, match="max_workers=0"):
        ModelParallelRunner(max_workers=0)
    with pytest.raises(ValueError, match="threads_per_worker=0"):
        ModelParallelRunner(max_workers=2, threads_per_worker=0)

    seen: dict[str, int] = {}

    def record(name: str):
        def body(x: int) -> int:
            seen[name] = torch.get_num_threads()
            return x

        return body

    pipeline = Pipeline([Node(record("a"), "x", "a", name="a"), Node(record("b"), "x", "b", name="b")])
    before = torch.get_num_threads()
    catalog = DataCatalog({"x": MemoryDataset(1)})
    ModelParallelRunner(max_workers=2, threads_per_worker=1).run(pipeline, catalog)
    assert seen == {"a": 1, "b": 1}
    assert torch.get_num_threads() == before


def test_ready_nodes_start_costliest_first_and_independent_ones_overlap():
    order: list[str] = []
    running = {"now": 0, "most": 0}
    lock = threading.Lock()

    def work(name: str):
        def body(x: int) -> int:
            with lock:
                order.append(name)
                running["now"] += 1
                running["most"] = max(running["most"], running["now"])
            time.sleep(0.2)
            with lock:
                running["now"] -= 1
            return x

        return body

    names = {"cheap": (), "costly": ("priority_9",), "middle": ("priority_4",), "other": ()}
    pipeline = Pipeline([Node(work(n), "x", n, name=n, tags=list(t)) for n, t in names.items()])
    ModelParallelRunner(max_workers=1).run(pipeline, DataCatalog({"x": MemoryDataset(1)}))
    assert order[:2] == ["costly", "middle"] and sorted(order[2:]) == ["cheap", "other"]
    order.clear()
    ModelParallelRunner(max_workers=2, threads_per_worker=1).run(
        pipeline, DataCatalog({"x": MemoryDataset(1)})
    )
    assert running["most"] == 2 and set(order[:2]) == {"costly", "middle"}  # started together


def test_kedro_run_defaults_to_this_runner_and_keeps_every_kedro_option():
    from kedro.framework.cli.project import run as kedro_run

    options = {param.name: param for param in run.params}
    assert options["runner"].default == DEFAULT_RUNNER
    assert load_obj(DEFAULT_RUNNER) is ModelParallelRunner
    assert set(options) == {param.name for param in kedro_run.params}
    assert run.callback is kedro_run.callback
    assert next(p for p in kedro_run.params if p.name == "runner").default is None  # Kedro's left alone
