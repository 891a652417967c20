"""Device choice, the device-dependent training settings (autocast, memory format) and seeding."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None): CUDA when available, else CPU; otherwise the named device.

    Raises:
        ValueError: an unparsable name, or ``cuda`` asked for on a machine without CUDA.
    """
    if name is None or (isinstance(name, str) and name.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:<n>', got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available on this machine")
    return device


def is_cuda(device: torch.device) -> bool:
    """True for a CUDA device."""
    return device.type == "cuda"


def autocasts(device: torch.device, amp: bool | str = "auto") -> bool:
    """Whether :func:`autocast` runs the forward in bf16: ``auto`` on CUDA only, true on any device, false never.

    On a CPU bf16 pays only for some networks and CPUs (oneDNN's AMX / AVX512-BF16 kernels trained VGG16-BN
    at 32 px about twice as fast, but ResNet18 and EfficientNet-B0 at 16 px slower); hence ``auto`` leaves
    CPUs in float32.
    """
    if amp == "auto":
        return is_cuda(device)
    return bool(amp)


@contextlib.contextmanager
def autocast(device: torch.device, amp: bool | str = "auto") -> Iterator[None]:
    """bf16 autocast where :func:`autocasts` says so; a no-op elsewhere."""
    if autocasts(device, amp):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def memory_format(device: torch.device, channels_last: bool | str = "auto") -> torch.memory_format:
    """channels_last when ``channels_last`` is true (any device) or ``auto`` on CUDA; else contiguous.

    On a CPU it depends on the network: oneDNN's channels-last kernels trained EfficientNet-B0 at 16 px
    twice as fast, but ResNets and VGG16 no faster or slower; hence ``auto`` keeps CPUs contiguous.
    """
    if channels_last == "auto":
        channels_last = is_cuda(device)
    return torch.channels_last if channels_last else torch.contiguous_format


def to_device(obj: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """Move a tensor or a (nested) dict/list/tuple of tensors to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking and is_cuda(device))
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    return obj


def configure_determinism(device: torch.device, deterministic: bool) -> None:
    """On CPU with ``deterministic``: ``torch.use_deterministic_algorithms(True, warn_only=True)``."""
    if deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def configure_denormals(device: torch.device, flush: bool | str = "auto") -> bool:
    """On a CPU, flush subnormal floats to zero when ``flush`` is true or ``auto``, keep them when it is false;
    returns whether flushing is on.

    Subnormal floats (below ~1.2e-38 in float32) take a slow path in CPU arithmetic: optimizers with weight
    decay (RMSprop above all) push weights and moments there, and epochs get several times slower. Flushing
    them to zero is deterministic and harmless at these scales. The setting is process-wide (x86 MXCSR, as
    ``torch.set_flush_denormal``); other devices are left alone.
    """
    if device.type != "cpu":
        return False
    on = flush is not False
    return bool(torch.set_flush_denormal(on)) and on


GLOBAL_RNG_LOCK = threading.RLock()
"""Held while a run seeds torch's, numpy's and Python's process-wide generators and draws from them (the
initial weights). Several models may train at once in one process (Kedro's ThreadRunner); with the lock, and
with nothing drawn from those generators during training (dropout has its own, ``alloy_mtl.mtl.models.dropout``),
each model's weights depend on its seed alone."""


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and ``random`` (hold :data:`GLOBAL_RNG_LOCK` around
    this call and the draws that must follow from it when other threads may seed or draw too)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
