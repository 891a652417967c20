"""Training checkpoints: atomic save/load, RNG state capture, and a config fingerprint guarding resume."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a different configuration (architecture, tasks, method, optimizer)."""


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` with ``torch.save`` atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only`` unpickling).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {path} could not be read: {err}") from err
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise ValueError(f"checkpoint {path}: not a training checkpoint (no 'fingerprint' entry)")
    return state


def capture_rng_state(generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
    """Torch (CPU and CUDA), numpy global, python ``random`` and the given generators' states."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
        "generators": [g.get_state() for g in generators],
    }


def restore_rng_state(state: Mapping[str, Any], generators: Sequence[torch.Generator] = ()) -> None:
    """Inverse of :func:`capture_rng_state`.

    Raises:
        ValueError: the number of generators differs from the saved one.
    """
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npz = state["numpy"]
    np.random.set_state(
        (
            npz["name"],
            npz["keys"].numpy().astype(np.uint32),
            npz["pos"],
            npz["has_gauss"],
            npz["cached_gaussian"],
        )
    )
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    saved = state["generators"]
    if len(saved) != len(generators):
        raise ValueError(
            f"checkpoint holds {len(saved)} data-loader generator state(s) but the loader has {len(generators)}"
        )
    for generator, generator_state in zip(generators, saved, strict=True):
        generator.set_state(generator_state)


def model_signature(model: nn.Module) -> str:
    """Hash of the model class and its state-dict names and shapes (architecture identity)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        if name.startswith(("calibration.", "ood.", "conformal.")):  # fitted after training, not architecture
            continue
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    return digest.hexdigest()[:16]


def check_fingerprint(
    saved: Mapping[str, Any], current: Mapping[str, Any], path: str | os.PathLike[str]
) -> None:
    """Raise :class:`CheckpointMismatchError` naming every differing field."""
    keys = sorted(set(saved) | set(current))
    diffs = [
        f"{k}: checkpoint={saved.get(k)!r} current={current.get(k)!r}"
        for k in keys
        if saved.get(k) != current.get(k)
    ]
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written by a different configuration; refusing to resume ("
            + "; ".join(diffs)
            + "). Use another checkpoint_dir or resume=False."
        )
