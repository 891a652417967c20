"""The population-progress figure: the metric of each trial per epoch, exploit events marked."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


def population_progress(history: pd.DataFrame, lineage: pd.DataFrame, metric: str, title: str = "") -> Figure:
    """One line per trial (``metric`` against epoch); each exploit is a dashed jump from the donor's point
    to the trial's next point, with a marker (a star where the optimizer kind changed)."""
    figure, axes = plt.subplots(figsize=(8, 4.5))
    colors = {}
    for trial, trial_rows in history.sort_values("seq").groupby("trial_id", sort=False):
        rows = trial_rows.dropna(subset=[metric])
        # a trial's epochs restart from the donor's after an exploit: draw each stretch on its own
        stretch = (rows["epoch"].diff().fillna(1) <= 0).cumsum()
        color = None
        for _, part in rows.groupby(stretch):
            (line,) = axes.plot(
                part["epoch"], part[metric], marker=".", color=color, label=None if color else trial
            )
            color = line.get_color()
        colors[trial] = color
    for event in lineage.itertuples():
        after = history[(history["seq"] == event.seq)]
        donor = history[
            (history["trial_id"] == event.donor_trial_id) & (history["epoch"] == event.donor_epoch)
        ]
        if after.empty:
            continue
        x1, y1 = float(after["epoch"].iloc[0]), float(after[metric].iloc[0])
        if not donor.empty:
            x0, y0 = float(donor["epoch"].iloc[0]), float(donor[metric].iloc[0])
            axes.plot([x0, x1], [y0, y1], linestyle="--", linewidth=0.8, color=colors.get(event.trial_id))
        axes.scatter(
            [x1],
            [y1],
            marker="*" if event.optimizer_switched else "o",
            s=120 if event.optimizer_switched else 40,
            facecolors="none" if not event.optimizer_switched else colors.get(event.trial_id),
            edgecolors="black",
            zorder=3,
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(title or f"PBT population ({len(lineage)} exploits; star: optimizer switched)")
    axes.legend(title="trial", fontsize="small", loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure
