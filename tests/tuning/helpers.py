"""A synthetic PBT result log: what the driver's recorder sees, in arrival order."""

from __future__ import annotations

from typing import Any


def row(trial: str, epoch: int, loss: float, optimizer: str, lr: float, wd: float, **extra: Any) -> dict:  # noqa: PLR0917
    """One reported epoch of a trial."""
    return {
        "trial_id": trial,
        "epoch": epoch,
        "val_loss": loss,
        "optimizer": optimizer,
        "lr": lr,
        "weight_decay": wd,
        "restore": None,
        **extra,
    }


def restore(donor: str, epoch: int, optimizer_before: str) -> dict:
    """The record a member reports on its first epoch after loading a checkpoint."""
    return {
        "donor_trial_id": donor,
        "donor_epoch": epoch,
        "checkpoint_path": f"/runs/{donor}/checkpoint_{epoch - 1:06d}",
        "restored_digest": f"digest-{donor}-{epoch}",
        "optimizer_before": optimizer_before,
        "optimizer_after": "",
    }


def synthetic_log() -> list[dict]:
    """Three members: B copies A at epoch 2 switching adam -> sgd; C resumes itself, then copies B at 4."""
    return [
        row("A", 1, 1.0, "adam", 1e-3, 1e-4),
        row("B", 1, 2.0, "adam", 1e-2, 1e-5),
        row("C", 1, 3.0, "rmsprop", 1e-4, 1e-3),
        row("A", 2, 0.8, "adam", 1e-3, 1e-4),
        row("B", 2, 1.9, "adam", 1e-2, 1e-5),
        row("C", 2, 2.5, "rmsprop", 1e-4, 1e-3, restore=restore("C", 1, "rmsprop")),  # a resume, no exploit
        row("B", 3, 0.7, "sgd", 5e-3, 2e-4, restore=restore("A", 2, "adam")),
        row("A", 3, 0.75, "adam", 1e-3, 1e-4),
        row("C", 3, 2.4, "rmsprop", 1e-4, 1e-3),
        row("B", 4, 0.6, "sgd", 5e-3, 2e-4),
        row("C", 5, 0.55, "sgd", 4e-3, 3e-4, restore=restore("B", 4, "sgd")),
        row("A", 4, 0.7, "adam", 1e-3, 1e-4),
    ]
