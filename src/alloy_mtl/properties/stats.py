"""Statistics of the study: mean +- sd over seeds, a paired test per comparison, Delta-m.

The paired test is the two-sided paired t-test over seeds (``scipy.stats.ttest_rel``): each seed trains the
baseline and the configuration on the same split, so seed-wise differences are paired. With five seeds it
is the test that can reach p < 0.05 at all (the exact Wilcoxon signed-rank test cannot go below 0.0625).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

logger = logging.getLogger(__name__)

TEST_NAME = "two-sided paired t-test over seeds (scipy.stats.ttest_rel)"
#: The metric Delta-m and the verdict use per task kind.
PRIMARY = {"regression": "r2", "classification": "f1"}
#: Metrics where lower is better (none of the study's metrics; kept for Delta-m's sign convention).
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae", "rmse"})


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(t, p)`` of the two-sided paired t-test of ``a`` against ``b`` (same length, paired by position).

    Identical samples give ``(0.0, 1.0)`` (no evidence of a difference) instead of NaN.

    Raises:
        ValueError: lengths differ or fewer than two pairs.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(
            f"paired_test: expected two 1-D samples of equal length >= 2, got {a.shape}, {b.shape}"
        )
    diff = a - b
    if np.allclose(diff, diff[0]) and np.isclose(diff[0], 0.0):
        return 0.0, 1.0
    if np.allclose(diff, diff[0]):  # constant non-zero difference: t is infinite
        return float(np.sign(diff[0]) * np.inf), 0.0
    result = stats.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue)


def delta_m(
    values: Mapping[str, float],
    baseline: Mapping[str, float],
    lower_is_better: Mapping[str, bool] | None = None,
) -> float:
    """Mean relative multi-task gain in percent (Maninis et al. 2019; Vandenhende et al. 2021).

    ``100 / T * sum_t (-1)^l_t (M_t - B_t) / |B_t|`` with ``l_t = 1`` where lower is better. A task whose
    baseline is 0 (an F1 of a model that never predicts the positive class) has no relative change: it is left
    out of the mean, with a warning; NaN when no task is left.
    """
    lower = dict(lower_is_better or {})
    gains = []
    for task, base in baseline.items():
        if base == 0:
            logger.warning("delta_m: the baseline's %s is 0; the task is left out of the relative gain", task)
            continue
        sign = -1.0 if lower.get(task, False) else 1.0
        gains.append(sign * (values[task] - base) / abs(base))
    return 100.0 * float(np.mean(gains)) if gains else float("nan")


def summarise(runs: pd.DataFrame, baseline: str, primary: Mapping[str, str]) -> pd.DataFrame:
    """The study's table in long form: per configuration, task and metric the mean, sd, the paired difference
    to ``baseline`` and its p-value; Delta-m rows (task ``all``, metric ``delta_m``) per configuration.

    Args:
        runs: ``configuration, seed, task, metric, value`` rows.
        baseline: the single-task configuration.
        primary: the Delta-m metric of each task.
    """
    rows = []
    base = runs[runs["configuration"] == baseline]
    for (name, task, metric), group in runs.groupby(["configuration", "task", "metric"], sort=False):
        ours = group.set_index("seed")["value"]
        theirs = base[(base["task"] == task) & (base["metric"] == metric)].set_index("seed")["value"]
        seeds = ours.index.intersection(theirs.index)
        row = {"configuration": name, "task": task, "metric": metric, "n_seeds": len(ours),
               "mean": ours.mean(), "sd": ours.std(ddof=1), "baseline_mean": theirs.mean()}  # fmt: skip
        if name != baseline and len(seeds) >= 2:
            t, p = paired_test(ours[seeds].to_numpy(), theirs[seeds].to_numpy())
            row.update(difference=float((ours[seeds] - theirs[seeds]).mean()), t=t, p_value=p)
        rows.append(row)
    for name in runs["configuration"].unique():
        if name == baseline:
            continue
        per_seed = []
        for seed in runs.loc[runs["configuration"] == name, "seed"].unique():
            values = _primary_values(runs, name, seed, primary)
            reference = _primary_values(runs, baseline, seed, primary)
            if values and set(values) == set(reference):
                per_seed.append(delta_m(values, reference))
        if per_seed:
            rows.append({"configuration": name, "task": "all", "metric": "delta_m", "n_seeds": len(per_seed),
                         "mean": float(np.mean(per_seed)),
                         "sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


def _primary_values(runs: pd.DataFrame, name: str, seed: int, primary: Mapping[str, str]) -> dict[str, float]:
    chosen = runs[(runs["configuration"] == name) & (runs["seed"] == seed)]
    return {
        task: float(chosen[(chosen["task"] == task) & (chosen["metric"] == metric)]["value"].iloc[0])
        for task, metric in primary.items()
        if ((chosen["task"] == task) & (chosen["metric"] == metric)).any()
    }
