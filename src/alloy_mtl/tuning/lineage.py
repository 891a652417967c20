"""From the population's result log to histories, the exploit lineage and the best configuration.

The log is what the driver saw, in arrival order: one row per reported epoch of a trial (see
``PopulationRecorder`` in :mod:`alloy_mtl.tuning.population`), each with ``trial_id``, ``epoch``, the metric,
the trial's ``optimizer``/``lr``/``weight_decay`` and, on the first epoch after a trial restored a checkpoint,
a ``restore`` record written by the trainable itself (whose checkpoint it loaded, which epoch, the digest of
the weights it restored, the optimizer kinds before and after). No Ray here: plain dictionaries and pandas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

CONFIG_KEYS = ("optimizer", "lr", "weight_decay")
LINEAGE_COLUMNS = (
    "seq",
    "trial_id",
    "donor_trial_id",
    "donor_epoch",
    "trial_epoch",
    "old_optimizer",
    "old_lr",
    "old_weight_decay",
    "donor_optimizer",
    "new_optimizer",
    "new_lr",
    "new_weight_decay",
    "optimizer_switched",
    "restored_digest",
    "checkpoint_path",
)


def history_frame(rows: Iterable[Mapping[str, Any]], metric: str) -> pd.DataFrame:
    """One row per reported epoch: ``seq`` (arrival order), ``trial_id``, ``epoch``, the metric, the config."""
    columns = ["seq", "trial_id", "epoch", metric, *CONFIG_KEYS]
    records = [{**{k: row.get(k) for k in columns[1:]}, "seq": seq} for seq, row in enumerate(rows)]
    return pd.DataFrame(records, columns=columns)


def extract_lineage(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Every exploit: which trial copied which donor's checkpoint, at which epochs, with which new config.

    A restore whose checkpoint the trial wrote itself (a paused trial resuming) is not an exploit.
    """
    events: list[dict[str, Any]] = []
    previous: dict[str, Mapping[str, Any]] = {}
    for seq, row in enumerate(rows):
        trial = str(row["trial_id"])
        restore = row.get("restore")
        if restore and str(restore["donor_trial_id"]) != trial:
            before = previous.get(trial, {})
            events.append(
                {
                    "seq": seq,
                    "trial_id": trial,
                    "donor_trial_id": str(restore["donor_trial_id"]),
                    "donor_epoch": int(restore["donor_epoch"]),
                    "trial_epoch": before.get("epoch"),
                    **{f"old_{k}": before.get(k) for k in CONFIG_KEYS},
                    "donor_optimizer": restore["optimizer_before"],
                    **{f"new_{k}": row.get(k) for k in CONFIG_KEYS},
                    "optimizer_switched": restore["optimizer_before"] != row.get("optimizer"),
                    "restored_digest": restore.get("restored_digest"),
                    "checkpoint_path": restore.get("checkpoint_path"),
                }
            )
        previous[trial] = row
    return pd.DataFrame(events, columns=list(LINEAGE_COLUMNS))


def final_rows(history: pd.DataFrame) -> pd.DataFrame:
    """The last reported row of each trial."""
    return history.sort_values("seq").groupby("trial_id", sort=False).tail(1)


def best_trial(history: pd.DataFrame, metric: str, mode: str) -> pd.Series:
    """The trial whose last reported ``metric`` is best (PBT judges members by where they ended).

    Raises:
        ValueError: no trial reported the metric.
    """
    last = final_rows(history).dropna(subset=[metric])
    if last.empty:
        raise ValueError(f"no trial reported {metric!r}; nothing to choose from")
    position = last[metric].idxmin() if mode == "min" else last[metric].idxmax()
    return last.loc[position]


def ancestry(lineage: pd.DataFrame, trial_id: str, before_seq: int | None = None) -> list[dict[str, Any]]:
    """The chain of exploits that produced ``trial_id``'s weights, oldest first (PBT's schedule of it)."""
    mine = lineage[lineage["trial_id"] == trial_id]
    if before_seq is not None:
        mine = mine[mine["seq"] < before_seq]
    if mine.empty:
        return []
    last = mine.sort_values("seq").iloc[-1]
    event = {
        "trial_id": trial_id,
        "donor_trial_id": last["donor_trial_id"],
        "donor_epoch": int(last["donor_epoch"]),
        "config": {k: _plain(last[f"new_{k}"]) for k in CONFIG_KEYS},
    }
    return [*ancestry(lineage, str(last["donor_trial_id"]), int(last["seq"])), event]


def best_configuration(
    history: pd.DataFrame, lineage: pd.DataFrame, *, arch: str, metric: str, mode: str, settings: Mapping
) -> dict[str, Any]:
    """The content of ``pbt_best.yml``: the best member's final config, its metric and its lineage."""
    best = best_trial(history, metric, mode)
    initial = history[history["trial_id"] == best["trial_id"]].sort_values("seq").iloc[0]
    return {
        "arch": arch,
        "metric": metric,
        "mode": mode,
        "value": float(best[metric]),
        "trial_id": str(best["trial_id"]),
        "epoch": int(best["epoch"]),
        "config": {k: _plain(best[k]) for k in CONFIG_KEYS},
        "initial_config": {k: _plain(initial[k]) for k in CONFIG_KEYS},
        "lineage": ancestry(lineage, str(best["trial_id"])),
        "population": {
            "trials": int(history["trial_id"].nunique()),
            "exploits": len(lineage),
            "optimizer_switches": int(lineage["optimizer_switched"].sum()) if len(lineage) else 0,
        },
        "tuning": dict(settings),
    }


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones (YAML-safe)."""
    return value.item() if hasattr(value, "item") else value
