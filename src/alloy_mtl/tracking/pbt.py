"""MLflow record of a Population Based Training run, written from the driver only (sqlite: one writer).

Under the ``kedro run``'s parent run (the tuning run, e.g. ``tune_resnet18``): one nested run per trial
(``<arch>.pbt.<trial_id>``) with its metric per reported epoch, its initial config as parameters and its
exploits as tags; the architecture's run (``<arch>``) gets the lineage table, the best configuration,
the population plot and the best value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from mlflow.entities import Metric

from alloy_mtl.tracking.runs import RunTracker, active_tracker, metric_name

logger = logging.getLogger(__name__)

TRIAL_TAG = "alloy_mtl.pbt.trial_id"
METRIC_COLUMNS_SKIPPED = ("seq", "trial_id", "epoch", "optimizer")


def log_population(
    arch: str,
    rows: list[Mapping[str, Any]],
    lineage: pd.DataFrame,
    best: Mapping[str, Any],
    figure: Figure | None = None,
    *,
    resolved: Mapping[str, Any] | None = None,
    tracker: RunTracker | None = None,
) -> dict[str, str]:
    """Log every trial and the PBT summary; returns ``{trial_id: run_id}`` (empty without a tracked run).

    ``resolved``: the training parameters every member started from, logged (dotted keys) to each trial run.
    """
    tracker = tracker or active_tracker()
    if tracker is None:
        logger.info("no MLflow run is active: the PBT population of %s is not tracked", arch)
        return {}
    runs: dict[str, str] = {}
    by_trial: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_trial.setdefault(str(row["trial_id"]), []).append(row)
    for trial, trial_rows in by_trial.items():
        run_id = tracker.child(f"{arch}.pbt.{trial}", tags={TRIAL_TAG: trial, "alloy_mtl.arch": arch})
        if run_id is None:
            continue
        runs[trial] = run_id
        first = trial_rows[0]
        tracker.log_params(run_id, {k: first.get(k) for k in ("optimizer", "lr", "weight_decay")}, "initial")
        if resolved:
            tracker.log_params(run_id, resolved, "training")
        _log_steps(tracker, run_id, trial_rows)
        exploits = lineage[lineage["trial_id"] == trial]
        tags = {
            f"alloy_mtl.pbt.exploit.{n}": (
                f"epoch {_epoch(e.trial_epoch)} <- {e.donor_trial_id}@{e.donor_epoch}: "
                f"{e.old_optimizer}->{e.new_optimizer} lr={e.new_lr:.3g} wd={e.new_weight_decay:.3g}"
            )
            for n, e in enumerate(exploits.itertuples())
        }
        tracker.set_tags(run_id, {**tags, "alloy_mtl.pbt.exploits": len(exploits)})
    summary_run = tracker.child(arch)
    if summary_run is not None:
        client = tracker.client
        client.log_text(summary_run, lineage.to_csv(index=False), "pbt/lineage.csv")
        client.log_dict(summary_run, dict(best), "pbt/pbt_best.yml")
        if figure is not None:
            client.log_figure(summary_run, figure, "pbt/population_progress.png")
        tracker.log_metrics(summary_run, {f"pbt.best_{best['metric']}": float(best["value"])})
        tracker.set_tags(
            summary_run,
            {
                "alloy_mtl.pbt.best_trial": best["trial_id"],
                "alloy_mtl.pbt.best_config": ", ".join(f"{k}={v}" for k, v in best["config"].items()),
                "alloy_mtl.pbt.exploits": len(lineage),
            },
        )
    return runs


def _log_steps(tracker: RunTracker, run_id: str, rows: list[Mapping[str, Any]]) -> None:
    """Every numeric value of each reported epoch, at ``step = epoch`` (after an exploit, epochs repeat)."""
    now = int(time.time() * 1000)
    metrics = [
        Metric(metric_name(key), float(value), now + n, int(row.get("epoch", n)))
        for n, row in enumerate(rows)
        for key, value in row.items()
        if key not in METRIC_COLUMNS_SKIPPED
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ]
    for start in range(0, len(metrics), 1000):
        tracker.client.log_batch(run_id, metrics=metrics[start : start + 1000])


def _epoch(value: Any) -> str:
    """An epoch as an integer ('?' when the trial had reported none before it was replaced)."""
    return "?" if value is None or pd.isna(value) else str(int(value))
