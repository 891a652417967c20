"""Coverage of a model's conformal sets and intervals on predictions it made (test split, evaluation set).

The sets were fitted on the validation split at a stated coverage (``training.conformal_coverage``); here they
are applied to other predictions with the thresholds the training summary reports, and their coverage per
alloy, set sizes and interval coverage are measured. On the evaluation set, imaged by a detector unit the
model never saw, coverage below the stated rate is the shift the conformal guarantee does not cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["conformal_coverage", "conformal_markdown"]


def conformal_coverage(
    predictions: pd.DataFrame, fitted: Mapping[str, Any], classes: list[str], targets: Mapping[str, str]
) -> dict[str, Any]:
    """Coverage of the sets (overall, per class), set sizes and each regression interval's coverage.

    Args:
        predictions: ``alloy_true``, ``prob_<class>`` and ``<target>_true`` / ``_pred`` columns.
        fitted: the training summary's ``conformal`` report (``coverage``, ``class_quantiles``, ``half_widths``).
        classes: the classification task's classes, in ``class_quantiles`` order.
        targets: regression task name -> target column stem (``thickness`` -> ``thickness_mm``).

    Returns:
        Empty when nothing was fitted or there are no predictions.
    """
    if not fitted or predictions.empty:
        return {}
    quantiles = np.asarray(fitted["class_quantiles"], dtype=np.float64)
    probs = predictions[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    members = 1.0 - probs <= quantiles[None, :]
    truth = predictions["alloy_true"].astype(str).to_numpy()
    index = pd.Index(classes).get_indexer(truth)
    labelled = index >= 0
    covered = members[labelled, index[labelled]]
    sizes = members.sum(axis=1)
    out: dict[str, Any] = {
        "target_coverage": float(fitted["coverage"]),
        "coverage": float(covered.mean()) if covered.size else float("nan"),
        "mean_set_size": float(sizes.mean()),
        "empty_sets": float((sizes == 0).mean()),
        "per_class": {
            c: {
                "coverage": float(covered[index[labelled] == i].mean()),
                "mean_set_size": float(sizes[labelled][index[labelled] == i].mean()),
                "n": int((index == i).sum()),
            }
            for i, c in enumerate(classes)
            if (index == i).any()
        },
    }
    intervals = {}
    for task, width in (fitted.get("half_widths") or {}).items():
        stem = targets.get(task)
        if stem is None or f"{stem}_true" not in predictions:
            continue
        error = np.abs(
            predictions[f"{stem}_true"].to_numpy(np.float64)
            - predictions[f"{stem}_pred"].to_numpy(np.float64)
        )
        error = error[np.isfinite(error)]
        intervals[task] = {
            "half_width": float(width),
            "coverage": float((error <= width).mean()) if error.size else float("nan"),
        }
    out["intervals"] = intervals
    return out


def conformal_markdown(reports: Mapping[str, Mapping[str, Any]], title: str) -> list[str]:
    """The comparison's section: per model, set coverage overall and per class, mean set size, and each
    interval's coverage (none when no model has a report)."""
    reports = {name: r for name, r in reports.items() if r}
    if not reports:
        return []
    classes = list(dict.fromkeys(c for r in reports.values() for c in r["per_class"]))
    tasks = list(dict.fromkeys(t for r in reports.values() for t in r.get("intervals", {})))
    target = next(iter(reports.values()))["target_coverage"]
    lines = [
        f"## Conformal sets and intervals ({title})",
        "",
        f"Fitted on the validation split for {target:.0%} coverage of every alloy; coverage measured here.",
        "",
        "| model | coverage | mean set size | "
        + " | ".join(classes)
        + " | "
        + " | ".join(f"{t} interval" for t in tasks)
        + " |",
        "|---|---|---|" + "---|" * (len(classes) + len(tasks)),
    ]
    for name, r in reports.items():
        per_class = [f"{r['per_class'][c]['coverage']:.3f}" if c in r["per_class"] else "" for c in classes]
        per_task = [
            f"{r['intervals'][t]['coverage']:.3f} (+-{r['intervals'][t]['half_width']:.3g})"
            if t in r.get("intervals", {})
            else ""
            for t in tasks
        ]
        lines.append(
            f"| {name} | {r['coverage']:.3f} | {r['mean_set_size']:.2f} | "
            + " | ".join(per_class + per_task)
            + " |"
        )
    return [*lines, ""]
