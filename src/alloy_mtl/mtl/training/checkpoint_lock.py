"""One training run per checkpoint folder: two runs of one architecture at once would resume from, or set aside,
each other's checkpoints.

The lock is an OS file lock (``filelock``) on ``<folder>.lock`` beside the folder (outside it, so setting a stale
folder aside does not move it): the operating system releases it when the process ends, however it ends, so a
killed run never leaves the folder locked. ``<folder>.lock.owner`` names the holder (host, process, start) for
the message of the run that is refused. Only the main process of a data-parallel run takes it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from alloy_mtl.mtl.parallel.process_group import is_main_process

__all__ = ["CheckpointFolderInUse", "checkpoint_lock"]


class CheckpointFolderInUse(RuntimeError):
    """Another training run holds the checkpoint folder."""


@contextmanager
def checkpoint_lock(directory: str | Path | None) -> Iterator[None]:
    """Hold ``directory``'s lock for the block (nothing for None or a non-main process).

    Raises:
        CheckpointFolderInUse: another run holds it, named with its host, process and start time.
    """
    if directory is None or not is_main_process():
        yield
        return
    folder = Path(directory)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder.with_name(f"{folder.name}.lock"))
    owner = folder.with_name(f"{folder.name}.lock.owner")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text().strip() if owner.is_file() else "holder unknown"
        raise CheckpointFolderInUse(
            f"{folder}: another training run is using these checkpoints ({holder}); wait for it to finish, or "
            "give this run its own folder (training.checkpoint_root)"
        ) from None
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        owner.write_text(f"host {socket.gethostname()}, process {os.getpid()}, since {started}\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
