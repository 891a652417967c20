"""Two models compared on the same images: the paired specimen bootstrap of their score difference.

The promotion gate asks whether a challenger is better than the champion, not whether each scored well on
its own data. Both models predict the same images (every condition of the robustness suite, or one test
split); each bootstrap resample draws specimens once, with replacement, and weights both models' images with
the same multiplicities in every condition. The statistic is the worst macro AP over the conditions (one
condition: its macro AP), so the interval of the difference keeps the pairing: images that are hard for both
models do not widen it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alloy_mtl.constants import ALLOYS
from alloy_mtl.evaluation.bootstrap import specimen_weights, weighted_average_precision
from alloy_mtl.evaluation.classification import label_indices, prob_columns

Predictions = Mapping[str, pd.DataFrame]
"""Condition name -> one model's predictions of it (``image_id``, ``specimen_id``, ``alloy_true``,
``prob_<alloy>``)."""


@dataclass(frozen=True)
class PairedComparison:
    """The challenger against the champion on the same images (``difference`` = challenger - champion)."""

    challenger: float
    champion: float
    difference: float
    ci_low: float
    ci_high: float
    level: float
    n_resamples: int
    conditions: tuple[str, ...]
    n_images: int
    n_specimens: int
    challenger_worst_condition: str
    champion_worst_condition: str
    alloy_ap_drop: dict[str, float]
    """Per alloy, the champion's AP minus the challenger's, averaged over the conditions (> 0: the challenger
    is worse on that alloy)."""

    @property
    def statistic(self) -> str:
        """What ``challenger`` and ``champion`` are."""
        if len(self.conditions) == 1:
            return f"macro AP on {self.conditions[0]}"
        return f"worst macro AP over {len(self.conditions)} conditions"


def _aligned(challenger: Predictions, champion: Predictions) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Both models' frames per condition, rows in the same image order; refuses predictions of other images."""
    if not challenger:
        raise ValueError("paired comparison: no condition to compare on")
    if set(challenger) != set(champion):
        raise ValueError(
            f"paired comparison: the models predicted different conditions ({sorted(challenger)} against "
            f"{sorted(champion)})"
        )
    pairs = {}
    for condition, first in challenger.items():
        second = champion[condition]
        if first.empty:
            raise ValueError(f"paired comparison: condition {condition!r} has no predictions")
        if set(first["image_id"]) != set(second["image_id"]) or len(first) != len(second):
            raise ValueError(
                f"paired comparison: the models predicted different images of condition {condition!r}"
            )
        second = second.set_index("image_id").loc[first["image_id"]].reset_index()
        pairs[condition] = (first.reset_index(drop=True), second)
    return pairs


def _macro_ap(
    y_true: np.ndarray, probs: np.ndarray, weights: np.ndarray, alloys: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per resample (rows of ``weights``): macro AP, and AP per alloy (NaN where a resample lacks it)."""
    per_class = np.stack(
        [weighted_average_precision(y_true == k, probs[:, k], weights) for k in range(len(alloys))], axis=1
    )
    with np.errstate(invalid="ignore"):
        macro = np.nanmean(np.where(np.isnan(per_class).all(axis=1, keepdims=True), 0.0, per_class), axis=1)
    return macro, per_class


def paired_comparison(
    challenger: Predictions,
    champion: Predictions,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    alloys: Sequence[str] = ALLOYS,
) -> PairedComparison:
    """The challenger's and the champion's worst macro AP over the conditions, their difference and its
    paired specimen-bootstrap interval, and the per-alloy AP change.

    Raises:
        ValueError: the two models did not predict the same conditions and images, or no condition is given.
    """
    pairs = _aligned(challenger, champion)
    specimens = pd.concat([first["specimen_id"].astype(str) for first, _ in pairs.values()])
    codes, uniques = pd.factorize(specimens, sort=True)
    draws = specimen_weights(np.arange(len(uniques)), n_resamples, seed) if n_resamples else None
    worst = {"challenger": [], "champion": []}
    points = {"challenger": [], "champion": []}
    alloy_aps = {"challenger": [], "champion": []}
    start = 0
    for first, second in pairs.values():
        rows = codes[start : start + len(first)]
        start += len(first)
        y_true = label_indices(first["alloy_true"].astype(str), alloys)
        ones = np.ones((1, len(first)))
        for name, frame in (("challenger", first), ("champion", second)):
            probs = frame[prob_columns(alloys)].to_numpy(dtype=float)
            point, per_alloy = _macro_ap(y_true, probs, ones, alloys)
            points[name].append(point[0])
            alloy_aps[name].append(per_alloy[0])
            if draws is not None:
                worst[name].append(_macro_ap(y_true, probs, draws[:, rows], alloys)[0])
    names = list(pairs)
    point = {name: np.asarray(values) for name, values in points.items()}
    difference = float(point["challenger"].min() - point["champion"].min())
    if draws is not None:
        resampled = np.min(np.stack(worst["challenger"]), axis=0) - np.min(
            np.stack(worst["champion"]), axis=0
        )
        finite = resampled[np.isfinite(resampled)]
        tail = (1.0 - level) / 2.0 * 100.0
        low, high = (float(v) for v in np.percentile(finite, [tail, 100.0 - tail]))
    else:
        low = high = difference
    with np.errstate(invalid="ignore"):
        drops = np.nanmean(np.stack(alloy_aps["champion"]) - np.stack(alloy_aps["challenger"]), axis=0)
    return PairedComparison(
        challenger=float(point["challenger"].min()),
        champion=float(point["champion"].min()),
        difference=difference,
        ci_low=low,
        ci_high=high,
        level=level,
        n_resamples=n_resamples,
        conditions=tuple(names),
        n_images=int(sum(len(first) for first, _ in pairs.values())),
        n_specimens=len(uniques),
        challenger_worst_condition=names[int(np.argmin(point["challenger"]))],
        champion_worst_condition=names[int(np.argmin(point["champion"]))],
        alloy_ap_drop={alloy: float(drops[k]) for k, alloy in enumerate(alloys)},
    )


def paired_decision(
    comparison: PairedComparison, min_margin: float, alloy_tolerance: float
) -> tuple[bool, str]:
    """Promote only when the lower end of the difference's interval is above ``min_margin`` and no alloy's AP
    falls by more than ``alloy_tolerance``; the reason names the numbers either way."""
    interval = f"[{comparison.ci_low:.4f}, {comparison.ci_high:.4f}]"
    scores = (
        f"{comparison.statistic}: challenger {comparison.challenger:.4f}, champion {comparison.champion:.4f}, "
        f"difference {comparison.difference:+.4f} {interval} ({comparison.level:.0%}, {comparison.n_images} "
        f"images, {comparison.n_specimens} specimens)"
    )
    finite = {alloy: drop for alloy, drop in comparison.alloy_ap_drop.items() if np.isfinite(drop)}
    worst_alloy = max(finite, key=finite.__getitem__) if finite else None
    if not comparison.ci_low > min_margin:
        return False, f"{scores}: the interval's lower end is not above the margin {min_margin}"
    if worst_alloy is not None and finite[worst_alloy] > alloy_tolerance:
        return False, (
            f"{scores}: but alloy {worst_alloy}'s AP falls by {finite[worst_alloy]:.4f} > tolerance "
            f"{alloy_tolerance}"
        )
    return (
        True,
        f"{scores}: lower end above the margin {min_margin}, no alloy falls by more than {alloy_tolerance}",
    )
