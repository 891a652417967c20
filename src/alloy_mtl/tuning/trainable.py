"""The PBT trainable: one population member, trained epoch by epoch with the project's Trainer.

Each epoch ends with ``ray.tune.report(metrics, checkpoint=...)`` holding the whole trainer state. When PBT
exploits, Ray restarts the weaker member with the donor's checkpoint and a new config: the member rebuilds
its trainer with the optimizer kind the checkpoint was written with, loads the state (weights, optimizer
moments, schedule, history, RNG) and then reconfigures the optimizer from the new config, which keeps the
moments when the kind stays and starts the optimizer afresh when it changes
(:meth:`~alloy_mtl.mtl.training.trainer.Trainer.reconfigure_optimizer`).

What was restored is reported by the member itself on its next epoch (``pbt_restore``: the donor trial,
its epoch, the checkpoint path and a digest of the restored weights), so the driver's lineage is built
from facts, not from the scheduler's intentions. Imported only inside Ray workers and by ``population``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from alloy_mtl.mtl.params import TrainingParams
from alloy_mtl.mtl.recipe import prepare_experiment
from alloy_mtl.mtl.training.callbacks import Callback
from alloy_mtl.mtl.training.checkpoint_io import load_checkpoint, save_checkpoint
from alloy_mtl.mtl.training.trainer import Trainer

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "trainer.pt"
RESTORE_KEY = "pbt_restore"
HYPERPARAMETERS = ("optimizer", "lr", "weight_decay")


@dataclass(frozen=True)
class TrialSetup:
    """What every member shares (sent once through Ray's object store)."""

    params: TrainingParams
    images: np.ndarray
    metadata: pd.DataFrame
    max_epochs: int


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        # reshape(-1): a 0-dim tensor (a fitted module's flag) cannot be viewed as bytes
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def trial_seed(base: int, trial_id: str) -> int:
    """A distinct seed per member: ``base`` plus the trial's index (the ``_00003`` of its id)."""
    suffix = trial_id.rsplit("_", 1)[-1]
    return base + (int(suffix) if suffix.isdigit() else 0)


class PbtReportCallback(Callback):
    """Restores a checkpoint at the start of training and reports each epoch (with a checkpoint) to Tune."""

    order = 100  # restore before the other callbacks start, report after they changed state

    def __init__(self, trial_id: str, config: Mapping[str, Any], restore: Mapping[str, Any] | None) -> None:
        self.trial_id = trial_id
        self.config = {k: config[k] for k in HYPERPARAMETERS}
        self.restore = restore
        self.pending: dict[str, Any] | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        """Load the checkpoint (if any), then switch to this trial's optimizer, lr and weight decay."""
        if self.restore is None:
            return
        state = self.restore["state"]
        trainer.load_state_dict(state["trainer"])
        trainer.reconfigure_optimizer(
            self.config["optimizer"],
            lr=float(self.config["lr"]),
            weight_decay=float(self.config["weight_decay"]),
        )
        self.pending = {
            "donor_trial_id": state["trial_id"],
            "donor_epoch": int(state["trainer"]["epoch"]),
            "checkpoint_path": self.restore["path"],
            "restored_digest": state_digest(trainer.model.state_dict()),
            "optimizer_before": state["optimizer"],
            "optimizer_after": self.config["optimizer"],
        }
        kind = "exploit of" if state["trial_id"] != self.trial_id else "resume from"
        logger.info("trial %s: %s %s at epoch %d", self.trial_id, kind, state["trial_id"], trainer.epoch)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Report the epoch's metrics and the trainer state as a checkpoint."""
        from ray import tune

        report: dict[str, Any] = {
            **{("lr_now" if k == "lr" else k): float(v) for k, v in metrics.items()},
            **self.config,
            RESTORE_KEY: json.dumps(self.pending) if self.pending else "",
        }
        self.pending = None
        state = {
            "trainer": trainer.state_dict(),
            "fingerprint": trainer.fingerprint(),
            "trial_id": self.trial_id,
            **self.config,
        }
        with tempfile.TemporaryDirectory(prefix="pbt-") as folder:
            save_checkpoint(state, Path(folder) / CHECKPOINT_FILE)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))


def _restored_state() -> dict[str, Any] | None:
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        state = load_checkpoint(Path(folder) / CHECKPOINT_FILE)
    return {"state": state, "path": str(checkpoint.path)}


def train_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """Ray Tune function trainable: train one member until ``max_epochs`` (PBT may stop or restart it)."""
    from ray import tune

    # Denormal floats: RMSprop with weight decay drives parameters and moments into the subnormal range,
    # where CPU arithmetic is slow: FNN epochs on the default data grew 8.8 -> 16.6 -> 25.5 s (3.8 -> 4.3 ->
    # 4.7 s flushed), starving RMSprop members of the population. Flushing to zero is harmless at these scales.
    torch.set_flush_denormal(True)
    trial_id = tune.get_context().get_trial_id()
    restore = _restored_state()
    params = setup.params.model_copy(update={"seed": trial_seed(setup.params.seed, trial_id)})
    prepared = prepare_experiment(setup.images, setup.metadata, params)
    # the trainer is built with the optimizer the checkpoint was written with, so its state loads;
    # the callback then reconfigures it from this trial's config
    start = restore["state"] if restore else config
    settings = prepared.params.trainer_settings().model_copy(
        update={
            **{k: start[k] for k in HYPERPARAMETERS},
            "epochs": setup.max_epochs,
            "early_stopping": prepared.params.early_stopping.model_copy(update={"enabled": False}),
            "restore_best": False,
            "time_budget_s": None,
            "progress_bar": False,
        }
    )
    trainer = Trainer(
        prepared.model,
        prepared.tasks,
        prepared.losses,
        settings,
        callbacks=[PbtReportCallback(trial_id, config, restore)],
    )
    trainer.fit(prepared.loaders["train"], prepared.loaders["val"])
