"""What a checkpoint must share with a run to be resumed, and what happens to one that does not."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alloy_mtl.mtl.loading.instrument_settings import conditioning_keys
from alloy_mtl.mtl.params import TrainingParams

__all__ = ["RESUMABLE_SETTINGS", "SETTINGS_ADDED_LATER", "run_identity", "set_aside_checkpoints"]

#: Settings that may change between a run and its resumption.
RESUMABLE_SETTINGS = frozenset(
    {
        "epochs",
        "resume",
        "progress_bar",
        "progress_every",
        "num_workers",
        "prefetch_factor",
        "data_on_device",
        "calibration",  # fitted after training, from the delivered weights
        "ood",  # likewise
        "conformal_coverage",  # likewise
        "conformal_set",  # likewise
        "conformal_images",  # likewise
    }
)


#: Settings added after checkpoints were first written, with the value that trains as before they existed:
#: at that value they stay out of the identity, so such checkpoints still resume.
SETTINGS_ADDED_LATER: dict[str, Any] = {
    "bad_pixels": "none",
    "instrument_conditioning": "auto",
    "wedge_summary": False,
    "summary_warmup_epochs": 0,
}


def run_identity(params: TrainingParams, metadata: pd.DataFrame, train_rows: np.ndarray) -> dict[str, str]:
    """What a checkpoint must share with this run to be resumed: the data and every setting but ``epochs``."""
    settings = params.model_dump(mode="json", exclude=set(RESUMABLE_SETTINGS))
    for name, behaviour_before in SETTINGS_ADDED_LATER.items():
        if settings.get(name) == behaviour_before:
            del settings[name]
    data: list[Any] = metadata[["image_id", "split"]].to_numpy().astype(str).tolist()
    keys = conditioning_keys(metadata, train_rows, params.instrument_conditioning)
    if keys:  # a conditioned model has other weights than an unconditioned one of the same settings
        data = [data, keys]

    def digest(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]

    return {"settings": digest(settings), "data": digest([data, train_rows.tolist()])}


def set_aside_checkpoints(checkpoint_dir: Path) -> Path:
    """Move an incompatible checkpoint folder aside (never delete what a user had)."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    target = checkpoint_dir.with_name(f"{checkpoint_dir.name}.stale-{stamp}")
    shutil.move(str(checkpoint_dir), str(target))
    return target
