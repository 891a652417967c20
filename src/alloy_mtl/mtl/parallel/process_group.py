"""Data-parallel training over ``torchrun`` processes: the process group and its collectives.

The per-rank samplers live in :mod:`alloy_mtl.mtl.loading.samplers`.

``torchrun --standalone --nproc_per_node=N -m alloy_mtl.train ...`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`setup_distributed` joins them into one process group (NCCL on
CUDA, gloo on the CPU) and returns the :class:`DistributedContext` the trainer and the loaders use. Without
torchrun (``WORLD_SIZE`` unset or 1) everything here is a no-op and training runs in one process, as before.

Only rank 0 writes (checkpoints, MLflow, progress bars): writers ask :func:`is_main_process`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor

from alloy_mtl.mtl.device import resolve_device

logger = logging.getLogger(__name__)

TORCHRUN_HINT = "start it with torchrun, e.g. `torchrun --standalone --nproc_per_node=2 -m alloy_mtl.train --arch resnet18`"


def is_main_process() -> bool:
    """True outside a process group and on rank 0 of one: the process that logs and writes files."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the data-parallel job and the collectives the trainer needs.

    Attributes:
        rank: global rank (0 logs and writes).
        world_size: number of processes.
        local_rank: rank on this node (the CUDA device index).
        device: this rank's device (``cuda:<local_rank>`` on GPU nodes).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    def average_(self, tensors: Sequence[Tensor]) -> None:
        """Replace every tensor by its mean over the ranks, in place, with one all-reduce.

        The tensors are flattened into one float32 (or wider) buffer, so the call costs one collective
        whatever their number, dtype or memory layout.
        """
        tensors = [t for t in tensors if t is not None]
        if not tensors or self.world_size == 1:
            return
        dtype = torch.promote_types(torch.float32, tensors[0].dtype)
        flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(self.world_size)
        offset = 0
        for tensor in tensors:
            count = tensor.numel()
            tensor.detach().copy_(flat[offset : offset + count].view_as(tensor))
            offset += count

    def sum_(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the ranks, in place; returns it."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (a decision all ranks must take together)."""
        if self.world_size == 1:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item() > 0)

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world_size > 1:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()


def setup_distributed(setting: Literal["auto"] | bool, device: str = "auto") -> DistributedContext | None:
    """Join the torchrun process group when this process is one of several; None for a single process.

    Args:
        setting: ``training.distributed``: ``auto`` (data-parallel when torchrun started several processes),
            ``true`` (require that), ``false`` (train alone even under torchrun).
        device: ``training.device``; CUDA gives each rank ``cuda:<LOCAL_RANK>`` and the NCCL backend, the CPU
            the gloo backend.

    A process group the caller already joined is used as it is (``distributed: true`` then trains
    data-parallel even in a group of one, which a test uses as the single-process reference).

    Raises:
        ValueError: ``distributed: true`` without torchrun, or more local ranks than CUDA devices.
    """
    if setting is False:
        return None
    joined = dist.is_available() and dist.is_initialized()
    world_size = dist.get_world_size() if joined else torchrun_world_size()
    if world_size <= 1 and not (joined and setting is True):
        if setting is True:
            raise ValueError(f"training.distributed: true needs several processes; {TORCHRUN_HINT}")
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s): "
                "give torchrun --nproc_per_node at most the GPU count"
            )
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not joined:
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        logger.info("rank %d of %d joined the %s process group", dist.get_rank(), world_size, backend)
    return DistributedContext(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=chosen
    )


def teardown_distributed() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
