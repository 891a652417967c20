"""The default runner of ``kedro run``: independent nodes (one architecture's training beside another's) run
at once in threads, and the CPU cores are shared out between them.

A small model trained on a CPU gains little from a second torch thread (ResNet18 or EfficientNet-B0 at 16 px:
1.2-1.25x), so two models with one thread each finish sooner than the same two one after the other with two
threads each. Each model stays reproducible: its initial weights are drawn under a lock
(``alloy_mtl.mtl.device.GLOBAL_RNG_LOCK``) and its dropout from a generator of its own
(``alloy_mtl.mtl.models.dropout``); the MLflow tracker writes through explicit run ids, never the thread-local active
run. A model's numbers depend on how many torch threads trained it (the order of floating-point sums), so a
run with ``max_workers=1`` on 2 cores repeats itself but not the 2-worker run.

    kedro run --pipeline train_all                                      # this runner, default workers
    kedro run --pipeline train_all --runner-params max_workers=1        # one node at a time, all cores
    kedro run --pipeline train_all --runner SequentialRunner            # Kedro's own
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import Any

import torch
from kedro.runner import ThreadRunner

from alloy_mtl.mtl.models.backbones import ARCHITECTURES

logger = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = len(ARCHITECTURES)
"""train_all trains one model per registered architecture: more workers than that would only wait."""

SETTLE_S = 0.02
"""A worker waits until no task was submitted for this long before it picks one, so that the highest priority
of a batch of ready nodes, submitted one by one, is chosen rather than the first to arrive."""

PRIORITY_TAG = re.compile(r"^priority_(\d+)$")
"""A node tagged ``priority_<n>`` starts before ready nodes of a lower ``n`` (untagged: 0)."""


def node_priority(tags: Iterable[str]) -> int:
    """The highest ``n`` among a node's ``priority_<n>`` tags; 0 without one."""
    return max((int(m.group(1)) for m in map(PRIORITY_TAG.match, tags) if m), default=0)


class PriorityThreadExecutor(Executor):
    """A thread pool that starts the waiting task of the highest priority first (then the first submitted).

    Kedro submits every node that is ready at once, in the order of a set: with more ready nodes than
    workers, which one waits would change from run to run. Starting the costliest first (train_all tags its
    slow trainings) makes the workers finish together and the wall time the same every run. Once a task
    fails, no waiting task starts (the running ones finish); leaving the ``with`` block cancels them.
    """

    def __init__(self, max_workers: int, priority: Callable[[Callable[..., Any]], int]) -> None:
        self._priority = priority
        self._queue: list[tuple[int, int, Future, Callable[..., Any], tuple, dict]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._shutdown = False
        self._halted = False
        self._last_submit = 0.0
        self._threads = [
            threading.Thread(target=self._work, name=f"alloy-mtl-worker-{i}", daemon=True)
            for i in range(max(1, int(max_workers)))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` by priority; the returned future holds its result."""
        future: Future = Future()
        with self._ready:
            if self._shutdown:
                raise RuntimeError("cannot submit to an executor that was shut down")
            heapq.heappush(self._queue, (-self._priority(fn), next(self._order), future, fn, args, kwargs))
            self._last_submit = time.monotonic()
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while True:
                    while (not self._queue or self._halted) and not self._shutdown:
                        self._ready.wait()
                    if not self._queue or self._halted:
                        return
                    # Kedro submits the ready nodes one after another: let the batch land before choosing
                    quiet = time.monotonic() - self._last_submit
                    if quiet >= SETTLE_S or self._shutdown:
                        break
                    self._ready.wait(SETTLE_S - quiet)
                _, _, future, fn, args, kwargs = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except (
                BaseException
            ) as error:  # handed to whoever waits on the future, as ThreadPoolExecutor does
                with self._ready:
                    self._halted = True  # a failed node fails the run: nothing waiting starts any more
                future.set_exception(error)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        # after a failed node, the nodes still waiting never start (the running ones finish)
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
        return False

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; run what is queued (or cancel it), then let the workers end."""
        with self._ready:
            self._shutdown = True
            if cancel_futures:
                for _, _, future, *_ in self._queue:
                    future.cancel()
                self._queue.clear()
            self._ready.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one, else the core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_workers(cores: int | None = None, cuda: bool | None = None) -> int:
    """One node per core on a CPU, up to :data:`MAX_DEFAULT_WORKERS`; one at a time when a CUDA GPU is there
    (the models would share its memory)."""
    cores = available_cores() if cores is None else cores
    cuda = torch.cuda.is_available() if cuda is None else cuda
    return 1 if cuda else max(1, min(cores, MAX_DEFAULT_WORKERS))


class ModelParallelRunner(ThreadRunner):
    """Kedro's :class:`~kedro.runner.ThreadRunner` that gives each worker its share of the cores as torch
    threads.

    Args:
        max_workers: nodes run at once (default :func:`default_workers`); ``1`` runs one node at a time.
        is_async: accepted for Kedro's CLI; threads do not load and save asynchronously.
        threads_per_worker: torch threads (intra-op) for every node (default: the cores divided by the
            workers, at least 1).

    Raises:
        ValueError: ``max_workers`` or ``threads_per_worker`` below 1.
    """

    def __init__(
        self, max_workers: int | None = None, is_async: bool = False, threads_per_worker: int | None = None
    ) -> None:
        workers = default_workers() if max_workers is None else int(max_workers)
        if workers < 1:
            raise ValueError(f"ModelParallelRunner: max_workers={max_workers}; expected 1 or more")
        if threads_per_worker is not None and int(threads_per_worker) < 1:
            raise ValueError(
                f"ModelParallelRunner: threads_per_worker={threads_per_worker}; expected 1 or more"
            )
        super().__init__(max_workers=workers, is_async=is_async)
        self.workers = workers
        self.threads_per_worker = (
            int(threads_per_worker)
            if threads_per_worker is not None
            else max(1, available_cores() // workers)
        )

    def _get_executor(self, max_workers: int) -> Executor:
        return PriorityThreadExecutor(max_workers, _task_priority)

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run the pipeline with torch set to :attr:`threads_per_worker` threads; the setting is restored."""
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads_per_worker)
        logger.info(
            "%d node(s) at a time, %d torch thread(s) each (--runner-params max_workers=N changes it)",
            self.workers,
            self.threads_per_worker,
        )
        try:
            return super().run(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)


def _task_priority(task: Callable[..., Any]) -> int:
    """The priority of a Kedro ``Task`` (its node's ``priority_<n>`` tag); 0 for anything else."""
    node = getattr(task, "node", None)
    return node_priority(getattr(node, "tags", ()))
